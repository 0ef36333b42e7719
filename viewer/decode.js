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
  if (typeof Uint8Array.fromBase64 === "function") {
    return Uint8Array.fromBase64(text); // skips whitespace; anything else not base64 throws
  }
  var bin = atob(text.replace(/[^A-Za-z0-9+/=]/g, ""));
  var out = new Uint8Array(bin.length);
  for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Compressed bytes per write into an inflater: once its reader stops
// asking, inflating stops within one of them (the stream's backpressure).
var SLICE = 1 << 16;

function deflateError(e) {
  return new ProfileError("the embedded profile is not valid deflate data (" + (e && e.message ? e.message : e) + ")");
}

// One DecompressionStream over `bytes`, read only as far as asked. `open`:
// the bytes end at a flush point inside the stream, not at its end, so
// they are not closed (that would be "truncated") and the reader stops
// by count, then cancel()s.
function Inflater(bytes, format, open) {
  if (typeof DecompressionStream !== "function") {
    throw new ProfileError("this browser has no DecompressionStream; open the card in a recent Chrome, Firefox or Safari");
  }
  var ds = new DecompressionStream(format);
  var writer = ds.writable.getWriter();
  var noop = function () {};
  this.reader = ds.readable.getReader();
  this.chunks = [];
  this.size = 0;
  this.done = false;
  // a corrupt or cancelled stream rejects these too; the reader reports it
  (async function () {
    for (var off = 0; off < bytes.length; off += SLICE) {
      await writer.ready;
      writer.write(bytes.subarray(off, off + SLICE)).catch(noop);
    }
    if (open) return;
    await writer.ready;
    writer.close().catch(noop);
  })().catch(noop);
}

// Reads output chunks while more() says so, or to the end.
Inflater.prototype.readWhile = async function (more) {
  while (!this.done && more()) {
    var r;
    try {
      r = await this.reader.read();
    } catch (e) {
      throw deflateError(e);
    }
    if (r.done) this.done = true;
    else {
      this.chunks.push(r.value);
      this.size += r.value.length;
    }
  }
  return this;
};

Inflater.prototype.readAll = function () {
  return this.readWhile(function () { return true; });
};

// `n` bytes of an open stream: all of them must come (the flush point).
Inflater.prototype.readExactly = async function (n) {
  var self = this;
  await this.readWhile(function () { return self.size < n; });
  this.reader.cancel().catch(function () {});
  if (this.size !== n) throw new ProfileError("the embedded profile ends early (" + this.size + " of " + n + " bytes)");
  return this;
};

// Everything read so far as one array.
Inflater.prototype.bytes = function () {
  if (this.chunks.length !== 1) {
    var out = new Uint8Array(this.size), at = 0;
    this.chunks.forEach(function (c) { out.set(c, at); at += c.length; });
    this.chunks = [out];
  }
  return this.chunks[0];
};

// The varint at `pos` of what is read so far: [value, next], or null when
// it is not all there yet (or is not a varint: the parser says why).
Inflater.prototype.uvAt = function (pos) {
  var ci = 0, base = 0, chunks = this.chunks, v = 0, mul = 1;
  for (var i = 0; i < 10; i++, pos++) {
    while (ci < chunks.length && pos >= base + chunks[ci].length) base += chunks[ci++].length;
    if (ci >= chunks.length) return null;
    var x = chunks[ci][pos - base];
    v += (x & 0x7f) * mul;
    if (x < 0x80) return [v, pos + 1];
    mul *= 128;
  }
  return null;
};

function concat(arrays) {
  var n = 0, at = 0;
  arrays.forEach(function (a) { n += a.length; });
  var out = new Uint8Array(n);
  arrays.forEach(function (a) { out.set(a, at); at += a.length; });
  return out;
}

// The card's base64(zlib(profile)). html.py flushes the stream (Z_FULL_FLUSH)
// right after SAMPLES' count and at its end, and says where in #mfp-parts
// ({"samples": [start, end]}, compressed offsets): so the sections before
// SAMPLES, its count and the sections after it inflate apart from its
// columns — most of a big profile's bytes — which the first view does not
// need. Past LAZY_SAMPLES the columns wait: `cut` says where they are
// missing from `head` ({at, len}) and `rest()` inflates them. Otherwise,
// and without parts, `head` is the whole profile.
async function inflatePayload(compressed, parts) {
  var cuts = parts && Array.isArray(parts.samples) ? parts.samples : null;
  if (!cuts || !(cuts[0] > 0 && cuts[1] >= cuts[0] && cuts[1] + 4 <= compressed.length)) {
    return { head: (await new Inflater(compressed, "deflate").readAll()).bytes(), cut: null };
  }
  // up to and with SAMPLES' count (the first flush point)
  var a = new Inflater(compressed.subarray(0, cuts[0]), "deflate", true), pos = -1, count = null, colLen = 0;
  await a.readWhile(function () {
    for (;;) {
      if (pos < 0) {
        var ver = a.size > 6 ? a.uvAt(6) : null;
        if (!ver) return true;
        pos = ver[1];
      }
      var tag = a.uvAt(pos), len = tag && a.uvAt(tag[1]);
      if (!len) return true;
      if (tag[0] === 7) {
        count = a.uvAt(len[1]);
        if (!count) return true;
        colLen = len[0] - (count[1] - len[1]);
        return false;
      }
      pos = len[1] + len[0];
    }
  });
  a.reader.cancel().catch(function () {});
  if (!count || a.size !== count[1]) throw new ProfileError("the card's data does not split at SAMPLES where it says");
  // the sections after SAMPLES: a raw deflate stream from the second flush
  // point to the end, without zlib's 4-byte checksum
  var tailP = new Inflater(compressed.subarray(cuts[1], compressed.length - 4), "deflate-raw").readAll();
  var cols = null;
  var rest = function () {
    if (!cols) {
      cols = new Inflater(compressed.subarray(cuts[0], cuts[1]), "deflate-raw", true).readExactly(colLen)
        .then(function (inf) { return inf.bytes(); });
    }
    return cols;
  };
  var tail = (await tailP).bytes();
  if (count[0] <= LAZY_SAMPLES) return { head: concat([a.bytes(), await rest(), tail]), cut: null };
  return { head: concat([a.bytes(), tail]), cut: { at: a.size, len: colLen }, rest: rest };
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
// is drawn from TOTALS. So past LAZY_SAMPLES its columns are inflated and
// decoded after the first frame: P.loadSamples(columns) (the card calls it
// then), or P.loadSamples(null, error) when they could not be inflated. A
// fault found then cannot turn the drawn card into an error card: the
// columns read as empty and P.sampleError says why (the card shows it).
var LAZY_SAMPLES = 200000;
var SAMPLE_COLUMNS = ["sampleT", "sampleStack", "sampleThread", "sampleWeight", "sampleFlags"];

// s: a Reader at SAMPLES' columns, or a function giving one later.
function defineSamples(P, s, n, nst, nth) {
  var cols = null;
  var empty = function () {
    return { sampleT: new Float64Array(0), sampleStack: new Uint32Array(0), sampleThread: new Uint32Array(0), sampleWeight: new Float64Array(0), sampleFlags: new Uint8Array(0) };
  };
  var decode = function (r) {
    if (!r) return empty();
    return {
      sampleT: r.f64(n, true), // µs since start, cumulative
      sampleStack: r.u32(n, nst, "sample stack"),
      sampleThread: r.u32(n, nth, "sample thread"),
      sampleWeight: r.f64(n, false),
      sampleFlags: r.u8(n),
    };
  };
  var set = function () { SAMPLE_COLUMNS.forEach(function (k) { P[k] = cols[k]; }); };
  P.sampleCount = n;
  P.sampleError = null;
  P.loadSamples = function () { return P.sampleError; };
  if (typeof s !== "function") {
    cols = decode(s); // decoded now, and a fault is the whole profile's
    set();
    return;
  }
  cols = empty(); // until loadSamples
  set();
  var loaded = false;
  P.loadSamples = function (columns, error) {
    if (loaded) return P.sampleError;
    loaded = true;
    try {
      if (error) throw error;
      cols = decode(s(columns));
    } catch (e) {
      if (!(e instanceof ProfileError)) throw e;
      P.sampleError = e;
      P.sampleCount = 0;
      cols = empty();
    }
    set();
    return P.sampleError;
  };
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

// cut: null, or where SAMPLES' columns are missing from `bytes` ({at,
// len}, inflatePayload's head): they come with P.loadSamples.
// outer: the profile a BASELINE is in. A baseline whose META says tables
// "appended" holds only the table rows the outer lacks; its indices count
// from the outer's first row.
function parseProfile(bytes, cut, outer) {
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
    if (sections[tag]) throw new ProfileError("section " + tag + " appears twice");
    if (tag === 7 && cut && cut.at > r.p && cut.at <= r.p + len && r.p + len - cut.at === cut.len) {
      sections[tag] = [r.p, cut.at]; // its count; the columns come later
      r.p = cut.at;
      continue;
    }
    if (r.p + len > bytes.length) throw new ProfileError("section " + tag + " runs past the end of the profile");
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
  if (nsm > bytes.length + (cut ? cut.len : 0)) throw new ProfileError("sample count larger than the profile");
  if (s && cut) {
    var later = function (columns) { return new Reader(columns, 0, columns.length); };
    defineSamples(P, later, nsm, nst, nth);
  } else defineSamples(P, s, nsm, nst, nth);

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
      P.baseline = parseProfile(bytes.subarray(bs[0], bs[1]), null, P);
    } catch (e) {
      P.baselineError = e && e.message ? e.message : String(e);
    }
  }
  return P;
}

export { ProfileError, base64ToBytes, inflatePayload, parseProfile };
