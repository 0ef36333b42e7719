// decode.js — reads the profile bytes of docs/FORMAT.md into typed columns.
//
// The card receives base64(zlib(profile)). Everything the views need comes
// out of here as flat typed arrays (one array per column, like the format),
// so a million samples cost a few megabytes and aggregation loops stay
// tight. Any malformed input throws a ProfileError with a reason that the
// error card shows; nothing here touches the DOM.

import { PROCESS_ROOT, PROCESS_PARTIAL } from "./constants.js";

function ProfileError(message) {
  this.name = "ProfileError";
  this.message = message;
}
ProfileError.prototype = Object.create(Error.prototype);

function base64ToBytes(text) {
  var clean = text.replace(/[^A-Za-z0-9+/=]/g, "");
  if (typeof Uint8Array.fromBase64 === "function") {
    return Uint8Array.fromBase64(clean);
  }
  var bin = atob(clean);
  var out = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function inflate(bytes) {
  if (typeof DecompressionStream !== "function") {
    throw new ProfileError("this browser has no DecompressionStream; open the card in a recent Chrome, Firefox or Safari");
  }
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  var buf;
  try {
    buf = await new Response(stream).arrayBuffer();
  } catch (e) {
    throw new ProfileError("the embedded profile is not valid deflate data (" + (e && e.message ? e.message : e) + ")");
  }
  return new Uint8Array(buf);
}

function Reader(bytes, pos, end) {
  this.b = bytes;
  this.p = pos;
  this.end = end;
}

Reader.prototype.uv = function () {
  var b = this.b, p = this.p, end = this.end;
  var result = 0, mul = 1;
  for (var i = 0; i < 10; i++) {
    if (p >= end) throw new ProfileError("truncated varint at byte " + p);
    var byte = b[p++];
    result += (byte & 0x7f) * mul;
    if (byte < 0x80) {
      this.p = p;
      return result;
    }
    mul *= 128;
  }
  throw new ProfileError("varint longer than 10 bytes at byte " + this.p);
};

// Columns into typed arrays. Three loops, one per array type, so each
// store stays monomorphic: these are the hot loops of loading a card (five
// columns of a million samples), run once, so mostly before the JIT has
// warmed up. `limit` (>= 0) checks indices as they are read; -1: none.
Reader.prototype.u32 = function (n, limit, what) {
  var out = new Uint32Array(n);
  var b = this.b, p = this.p, end = this.end;
  for (var i = 0; i < n; i++) {
    if (p >= end) throw new ProfileError("column runs past its section");
    var x = b[p++], v = x & 0x7f;
    if (x >= 0x80) {
      var mul = 128, k = 1;
      do {
        if (p >= end) throw new ProfileError("truncated varint at byte " + p);
        if (++k > 5) throw new ProfileError((what || "value") + " too large at byte " + p);
        x = b[p++];
        v += (x & 0x7f) * mul;
        mul *= 128;
      } while (x >= 0x80);
      if (v > 0xffffffff) throw new ProfileError((what || "value") + " too large at byte " + p);
    }
    if (limit >= 0 && v >= limit) throw new ProfileError(what + " index " + v + " out of range (" + limit + ")");
    out[i] = v;
  }
  this.p = p;
  return out;
};

Reader.prototype.u8 = function (n) {
  var out = new Uint8Array(n);
  var b = this.b, p = this.p, end = this.end;
  for (var i = 0; i < n; i++) {
    if (p >= end) throw new ProfileError("column runs past its section");
    var x = b[p++], v = x & 0x7f;
    if (x >= 0x80) {
      var mul = 128, k = 1;
      do {
        if (p >= end) throw new ProfileError("truncated varint at byte " + p);
        if (++k > 10) throw new ProfileError("varint longer than 10 bytes at byte " + p);
        x = b[p++];
        v += (x & 0x7f) * mul;
        mul *= 128;
      } while (x >= 0x80);
    }
    out[i] = v; // flags and kinds: bits above the 8th are not used
  }
  this.p = p;
  return out;
};

// sum: store the running sum (delta-encoded times).
Reader.prototype.f64 = function (n, sum) {
  var out = new Float64Array(n);
  var b = this.b, p = this.p, end = this.end, acc = 0;
  for (var i = 0; i < n; i++) {
    if (p >= end) throw new ProfileError("column runs past its section");
    var x = b[p++], v = x & 0x7f;
    if (x >= 0x80) {
      var mul = 128, k = 1;
      do {
        if (p >= end) throw new ProfileError("truncated varint at byte " + p);
        if (++k > 10) throw new ProfileError("varint longer than 10 bytes at byte " + p);
        x = b[p++];
        v += (x & 0x7f) * mul;
        mul *= 128;
      } while (x >= 0x80);
    }
    if (sum) {
      acc += v;
      out[i] = acc;
    } else out[i] = v;
  }
  this.p = p;
  return out;
};

Reader.prototype.sv = function () {
  var u = this.uv();
  // zigzag on values beyond 2^53 loses precision; timeline values stay far below
  return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
};

Reader.prototype.str = function (decoder) {
  var n = this.uv();
  if (this.p + n > this.end) throw new ProfileError("string runs past its section");
  var s = decoder.decode(this.b.subarray(this.p, this.p + n));
  this.p += n;
  return s;
};

// SAMPLES is most of a big profile's bytes and only time-ordered views
// need it (a range, the stack chart, activity over time); the first view
// is drawn from TOTALS. So past LAZY_SAMPLES its columns are decoded on
// first use — the card asks right after its first frame. A fault found
// then cannot turn the drawn card into an error card: the columns read as
// empty and P.sampleError says why (the card shows it).
var LAZY_SAMPLES = 200000;
var SAMPLE_COLUMNS = ["sampleT", "sampleStack", "sampleThread", "sampleWeight", "sampleFlags"];

function defineSamples(P, s, n, nst, nth) {
  var cols = null;
  var empty = function () {
    return { sampleT: new Float64Array(0), sampleStack: new Uint32Array(0), sampleThread: new Uint32Array(0), sampleWeight: new Float64Array(0), sampleFlags: new Uint8Array(0) };
  };
  var decode = function () {
    if (!s) return empty();
    return {
      sampleT: s.f64(n, true), // µs since start, cumulative
      sampleStack: s.u32(n, nst, "sample stack"),
      sampleThread: s.u32(n, nth, "sample thread"),
      sampleWeight: s.f64(n, false),
      sampleFlags: s.u8(n),
    };
  };
  var load = function () {
    if (cols) return cols;
    try {
      cols = decode();
    } catch (e) {
      if (!(e instanceof ProfileError)) throw e;
      P.sampleError = e;
      P.sampleCount = 0;
      cols = empty();
    }
    return cols;
  };
  P.sampleCount = n;
  P.sampleError = null;
  P.loadSamples = function () { load(); return P.sampleError; };
  if (n <= LAZY_SAMPLES) {
    cols = decode(); // small: decoded now, and a fault is the whole profile's
    SAMPLE_COLUMNS.forEach(function (k) { P[k] = cols[k]; });
    return;
  }
  SAMPLE_COLUMNS.forEach(function (k) {
    Object.defineProperty(P, k, { get: function () { return load()[k]; }, enumerable: true });
  });
}

// a followed by b, of b's type (the rows of a baseline's tables after the
// outer profile's)
function cat(a, b) {
  if (!a) return b;
  var out = new b.constructor(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// outer: the profile a BASELINE is in. A baseline whose META says tables
// "appended" holds only the table rows the outer lacks; its indices count
// from the outer's first row.
function parseProfile(bytes, outer) {
  var magic = "MFPROF";
  if (bytes.length < 7) throw new ProfileError("profile too short (" + bytes.length + " bytes)");
  for (var i = 0; i < 6; i++) {
    if (bytes[i] !== magic.charCodeAt(i)) throw new ProfileError("not a profile (bad magic)");
  }
  var r = new Reader(bytes, 6, bytes.length);
  var version = r.uv();
  if (version !== 1) throw new ProfileError("unsupported profile format version " + version);
  var dec = new TextDecoder("utf-8");
  var sections = {};
  while (r.p < bytes.length) {
    var tag = r.uv();
    var len = r.uv();
    if (r.p + len > bytes.length) throw new ProfileError("section " + tag + " runs past the end of the profile");
    if (sections[tag]) throw new ProfileError("section " + tag + " appears twice");
    sections[tag] = [r.p, r.p + len];
    r.p += len;
  }
  function sec(tag) {
    var s = sections[tag];
    return s ? new Reader(bytes, s[0], s[1]) : null;
  }

  var P = { meta: {}, strings: [""] };
  var s = sec(1);
  if (s) {
    var text = s.str(dec);
    try {
      P.meta = JSON.parse(text);
    } catch (e) {
      throw new ProfileError("META is not valid JSON");
    }
    if (!P.meta || typeof P.meta !== "object" || Array.isArray(P.meta)) P.meta = {};
  }
  var O = outer && P.meta.tables === "appended" ? outer : null;
  s = sec(2);
  if (s) {
    var ns = s.uv();
    if (ns > bytes.length) throw new ProfileError("string count larger than the profile");
    P.strings = new Array(ns);
    for (i = 0; i < ns; i++) P.strings[i] = s.str(dec);
    if (!ns) P.strings = [""];
  }
  if (O) P.strings = s ? O.strings.concat(P.strings.slice(0, ns)) : O.strings;
  var nstr = P.strings.length;

  s = sec(3);
  var nf = (s ? s.uv() : 0) + (O ? O.funcName.length : 0);
  var nfOwn = nf - (O ? O.funcName.length : 0);
  P.funcName = cat(O && O.funcName, s ? s.u32(nfOwn, nstr, "function name") : new Uint32Array(0));
  P.funcFile = cat(O && O.funcFile, s ? s.u32(nfOwn, nstr, "function file") : new Uint32Array(0));
  P.funcLine = cat(O && O.funcLine, s ? s.u32(nfOwn, -1, "function line") : new Uint32Array(0));
  P.funcKind = cat(O && O.funcKind, s ? s.u8(nfOwn) : new Uint8Array(0));

  s = sec(4);
  var nfr0 = O ? O.frameFunc.length : 0;
  var nfrOwn = s ? s.uv() : 0, nfr = nfr0 + nfrOwn;
  P.frameFunc = cat(O && O.frameFunc, s ? s.u32(nfrOwn, nf, "frame function") : new Uint32Array(0));
  P.frameLine = cat(O && O.frameLine, s ? s.u32(nfrOwn, -1, "frame line") : new Uint32Array(0));

  s = sec(5);
  var nst0 = O ? O.stackParent.length : 0;
  var nstOwn = s ? s.uv() : 0, nst = nst0 + nstOwn;
  if (nstOwn > bytes.length) throw new ProfileError("stack count larger than the profile");
  var pd = s ? s.u32(nstOwn, -1, "parent delta") : new Uint32Array(0);
  P.stackParent = new Int32Array(nst);
  if (O) P.stackParent.set(O.stackParent);
  for (i = nst0; i < nst; i++) {
    var d = pd[i - nst0];
    if (d > i) throw new ProfileError("stack node " + i + " has a parent after it");
    P.stackParent[i] = d === 0 ? -1 : i - d;
  }
  P.stackFrame = cat(O && O.stackFrame, s ? s.u32(nstOwn, nfr, "stack frame") : new Uint32Array(0));

  s = sec(6);
  var nth = s ? s.uv() : 0;
  P.threadTid = s ? s.f64(nth, false) : new Float64Array(0);
  P.threadName = s ? s.u32(nth, nstr, "thread name") : new Uint32Array(0);
  P.threadFlags = s ? s.u32(nth, -1, "thread flags") : new Uint32Array(0);
  // one process unless PROCESSES (read below, with MEMORY) says otherwise
  P.processes = [{ pid: 0, ppid: 0, name: "", root: true, partial: false }];
  P.threadProcess = new Uint32Array(nth);

  s = sec(7);
  var nsm = s ? s.uv() : 0;
  if (nsm > bytes.length) throw new ProfileError("sample count larger than the profile");
  defineSamples(P, s, nsm, nst, nth);

  s = sec(8);
  var nto = s ? s.uv() : 0;
  if (nto > bytes.length) throw new ProfileError("totals count larger than the profile");
  P.totStack = s ? s.u32(nto, nst, "totals stack") : new Uint32Array(0);
  P.totThread = s ? s.u32(nto, nth, "totals thread") : new Uint32Array(0);
  P.totFlags = s ? s.u8(nto) : new Uint8Array(0);
  P.totCount = s ? s.f64(nto, false) : new Float64Array(0);
  P.totWeight = s ? s.f64(nto, false) : new Float64Array(0);

  P.series = [];
  s = sec(9);
  if (s) {
    var nser = s.uv();
    if (nser > bytes.length) throw new ProfileError("series count larger than the profile");
    for (var k = 0; k < nser; k++) {
      var nameIdx = s.uv(), unitIdx = s.uv(), scale = s.uv(), np = s.uv();
      if (nameIdx >= nstr || unitIdx >= nstr) throw new ProfileError("timeline series names a missing string");
      if (np > bytes.length) throw new ProfileError("timeline point count larger than the profile");
      var t = s.f64(np, true);
      var v = new Float64Array(np);
      var va = 0, div = Math.pow(10, scale);
      for (i = 0; i < np; i++) {
        va += s.sv();
        v[i] = va / div;
      }
      P.series.push({ name: P.strings[nameIdx], unit: P.strings[unitIdx], t: t, v: v });
    }
  }

  s = sec(10);
  var nm = s ? s.uv() : 0;
  if (nm > bytes.length) throw new ProfileError("memory count larger than the profile");
  P.memStack = s ? s.u32(nm, nst, "memory stack") : new Uint32Array(0);
  P.memLive = s ? s.f64(nm, false) : new Float64Array(0);
  P.memAlloc = s ? s.f64(nm, false) : new Float64Array(0);
  P.memCount = s ? s.f64(nm, false) : new Float64Array(0);

  // HEAP_EVENTS: times in µs from the start; a free of Infinity = still live
  s = sec(13);
  var ne = s ? s.uv() : 0;
  if (ne > bytes.length) throw new ProfileError("heap event count larger than the profile");
  P.heapStack = s ? s.u32(ne, nst, "heap event stack") : new Uint32Array(0);
  P.heapBytes = s ? s.f64(ne, false) : new Float64Array(0);
  P.heapAlloc = s ? s.f64(ne, true) : new Float64Array(0);
  P.heapFree = s ? s.f64(ne, false) : new Float64Array(0);
  for (i = 0; i < ne; i++) P.heapFree[i] = P.heapFree[i] ? P.heapAlloc[i] + P.heapFree[i] - 1 : Infinity;
  s = sec(14);
  var nl = s ? s.uv() : 0;
  if (nl > bytes.length) throw new ProfileError("leak count larger than the profile");
  P.leakStack = s ? s.u32(nl, nst, "leak stack") : new Uint32Array(0);
  P.leakLive = s ? s.f64(nl, false) : new Float64Array(0);

  // PROCESSES and PROCESS_MAP (issue 14): a process tree's processes, and
  // the process of each thread and memory row (rows not mapped: process 0).
  P.memProcess = new Uint32Array(nm);
  s = sec(11);
  if (s) {
    var npr = s.uv();
    if (npr < 1 || npr > bytes.length) throw new ProfileError("process count out of range");
    var pid = s.f64(npr, false), ppid = s.f64(npr, false);
    var pname = s.u32(npr, nstr, "process name"), pflags = s.u32(npr, -1, "process flags");
    var pstart = s.f64(npr, false), pdur = s.f64(npr, false), pcpu = s.f64(npr, false);
    var prss = s.f64(npr, false), pheap = s.f64(npr, false);
    P.processes = new Array(npr);
    for (i = 0; i < npr; i++) {
      var z = pstart[i];  // zigzag: µs from the profile start, may be negative
      P.processes[i] = {
        pid: pid[i], ppid: ppid[i], name: P.strings[pname[i]], root: !!(pflags[i] & PROCESS_ROOT),
        partial: !!(pflags[i] & PROCESS_PARTIAL), startUs: z % 2 ? -(z + 1) / 2 : z / 2, durationUs: pdur[i],
        cpuUs: pcpu[i], rssPeakBytes: prss[i], heapPeakBytes: pheap[i],
      };
    }
    s = sec(12);
    if (s) {
      var ntm = s.uv();
      if (ntm > nth) throw new ProfileError("process map longer than THREADS");
      P.threadProcess.set(s.u32(ntm, npr, "thread process"));
      var nmm = s.uv();
      if (nmm > nm) throw new ProfileError("process map longer than MEMORY");
      P.memProcess.set(s.u32(nmm, npr, "memory process"));
    }
  }

  // BASELINE (issue 15): the profile this one is compared with, TOTALS
  // only. A broken one costs the comparison, not the card.
  P.baseline = null;
  var bs = sections[15];
  if (bs) {
    try {
      P.baseline = parseProfile(bytes.subarray(bs[0], bs[1]), P);
    } catch (e) {
      P.baselineError = e && e.message ? e.message : String(e);
    }
  }
  return P;
}

export { ProfileError, base64ToBytes, inflate, parseProfile };
