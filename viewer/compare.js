// compare.js — this run against its baseline (issue 15), from TOTALS only.
//
// The baseline travels as section BASELINE (docs/FORMAT.md): its tables and
// TOTALS, decoded like any profile. Functions are matched by identity, name
// and file, never by line, as Profile.diff does in Python: exact identity
// first, then name and file name when exactly one such function is left on
// each side (the same code unpacked elsewhere). Everything here is whole-run
// and all-threads: a baseline has no time order, and its threads are other
// threads. No DOM here.

import { SAMPLE_ON_CPU } from "./constants.js";

function identity(P, f) {
  return P.strings[P.funcName[f]] + "\u0000" + P.strings[P.funcFile[f]];
}

function baseName(file) {
  var i = Math.max(file.lastIndexOf("/"), file.lastIndexOf("\\"));
  return i < 0 ? file : file.slice(i + 1);
}

// Per function identity: self and inclusive µs (a function recursing on a
// stack counts once), inclusive µs per caller→callee edge, and the whole.
function identityTotals(P, cpuOnly, keyOf) {
  var nst = P.stackParent.length;
  var w = new Float64Array(nst), i;
  var whole = 0;
  for (i = 0; i < P.totStack.length; i++) {
    if (cpuOnly && !(P.totFlags[i] & SAMPLE_ON_CPU)) continue;
    w[P.totStack[i]] += P.totWeight[i];
    whole += P.totWeight[i];
  }
  var self = new Map(), total = new Map(), edges = new Map();
  var add = function (m, k, v) { m.set(k, (m.get(k) || 0) + v); };
  for (i = 0; i < nst; i++) {
    if (!w[i]) continue;
    var seen = new Set(), seenEdge = new Set();
    var node = i, child = null;
    add(self, keyOf[P.frameFunc[P.stackFrame[i]]], w[i]);
    while (node >= 0) {
      var k = keyOf[P.frameFunc[P.stackFrame[node]]];
      if (!seen.has(k)) {
        seen.add(k);
        add(total, k, w[i]);
      }
      if (child !== null) {
        var e = k + "\u0001" + child;
        if (!seenEdge.has(e)) {
          seenEdge.add(e);
          add(edges, e, w[i]);
        }
      }
      child = k;
      node = P.stackParent[node];
    }
  }
  return { self: self, total: total, edges: edges, whole: whole };
}

// Baseline identity → this run's identity (or itself when unmatched).
function matchIdentities(beforeKeys, afterKeys) {
  var after = new Set(afterKeys), map = new Map();
  var leftB = [], leftA = new Map();
  beforeKeys.forEach(function (k) {
    if (after.has(k)) map.set(k, k);
    else leftB.push(k);
  });
  var matched = new Set(map.values());
  var short = function (k) {
    var p = k.split("\u0000");
    return p[0] + "\u0000" + baseName(p[1] || "");
  };
  afterKeys.forEach(function (k) {
    if (matched.has(k)) return;
    var s = short(k);
    leftA.set(s, leftA.has(s) ? null : k);
  });
  var countB = new Map();
  leftB.forEach(function (k) { countB.set(short(k), (countB.get(short(k)) || 0) + 1); });
  leftB.forEach(function (k) {
    var s = short(k), a = leftA.get(s);
    map.set(k, a && countB.get(s) === 1 ? a : k);
  });
  return map;
}

// opts: {cpuOnly}. Returns null without a baseline, else {before_us,
// after_us (durations), rows (every function, biggest inclusive change
// first), changes (the functions a change starts in: see below), map}.
function compareRuns(P, B, opts) {
  if (!B) return null;
  var cpu = !!(opts && opts.cpuOnly);
  var keysA = [], keysB = [], f;
  for (f = 0; f < P.funcName.length; f++) keysA.push(identity(P, f));
  for (f = 0; f < B.funcName.length; f++) keysB.push(identity(B, f));
  var map = matchIdentities(Array.from(new Set(keysB)), Array.from(new Set(keysA)));
  var keysBmapped = keysB.map(function (k) { return map.get(k); });
  var a = identityTotals(P, cpu, keysA), b = identityTotals(B, cpu, keysBmapped);
  var names = new Set(a.total.keys());
  b.total.forEach(function (_, k) { names.add(k); });
  var rows = [];
  names.forEach(function (k) {
    var p = k.split("\u0000");
    var before = b.total.get(k) || 0, after = a.total.get(k) || 0;
    rows.push({
      key: k, name: p[0], file: p[1] || "",
      before: before, after: after, delta: after - before,
      beforeShare: b.whole ? before / b.whole : 0, afterShare: a.whole ? after / a.whole : 0,
      selfBefore: b.self.get(k) || 0, selfAfter: a.self.get(k) || 0,
    });
  });
  rows.sort(function (x, y) { return Math.abs(y.delta) - Math.abs(x.delta) || (x.name < y.name ? -1 : 1); });
  return {
    before_us: (B.meta.duration_ns || 0) / 1000,
    after_us: (P.meta.duration_ns || 0) / 1000,
    whole_before: b.whole, whole_after: a.whole,
    rows: rows,
    changes: changeSources(rows, a.edges, b.edges),
    map: map, keysA: keysA, keysB: keysBmapped,
  };
}

// A slower function makes every caller above it slower by as much. The
// list a person reads names where a change starts: a function is left out
// when one callee's edge carries most (80 %) of its change in the same
// direction — the change passes through it.
var PASS_THROUGH = 0.8;

function changeSources(rows, edgesA, edgesB) {
  var byCaller = new Map();
  var note = function (e) {
    var cut = e.indexOf("\u0001"), caller = e.slice(0, cut);
    var d = (edgesA.get(e) || 0) - (edgesB.get(e) || 0);
    var list = byCaller.get(caller);
    if (!list) byCaller.set(caller, (list = []));
    list.push(d);
  };
  var all = new Set(edgesA.keys());
  edgesB.forEach(function (_, e) { all.add(e); });
  all.forEach(note);
  return rows.filter(function (r) {
    if (!r.delta) return false;
    var ds = byCaller.get(r.key) || [];
    for (var i = 0; i < ds.length; i++) {
      if (ds[i] / r.delta >= PASS_THROUGH) return false;
    }
    return true;
  });
}

// Inclusive baseline µs at each node of this run's function tree (model.js),
// matching the path of identities from the root: what the differential
// flame graph colours by.
function baselineAtNodes(M, B, cmp, cpuOnly) {
  var before = new Float64Array(M.n);
  if (!B || !cmp) return before;
  // the baseline's own tree of identity paths, inclusive weights
  var nst = B.stackParent.length, trie = new Map(), node = new Int32Array(nst), i;
  var weight = [0];
  for (i = 0; i < nst; i++) {
    var p = B.stackParent[i], pn = p < 0 ? 0 : node[p];
    var key = pn + "\u0002" + cmp.keysB[B.frameFunc[B.stackFrame[i]]];
    var id = trie.get(key);
    if (id === undefined) {
      id = weight.length;
      trie.set(key, id);
      weight.push(0);
    }
    node[i] = id;
  }
  var parentOf = new Int32Array(weight.length);
  trie.forEach(function (id, key) { parentOf[id] = +key.slice(0, key.indexOf("\u0002")); });
  for (i = 0; i < B.totStack.length; i++) {
    if (cpuOnly && !(B.totFlags[i] & SAMPLE_ON_CPU)) continue;
    weight[node[B.totStack[i]]] += B.totWeight[i];
  }
  // trie ids are made parents first, so one reverse pass sums subtrees
  for (i = weight.length - 1; i > 0; i--) weight[parentOf[i]] += weight[i];
  var at = new Int32Array(M.n);
  before[0] = weight[0];
  for (var fn = 1; fn < M.n; fn++) {
    var up = at[M.parent[fn]];
    var t = up < 0 ? undefined : trie.get(up + "\u0002" + cmp.keysA[M.func[fn]]);
    at[fn] = t === undefined ? -1 : t;
    before[fn] = t === undefined ? 0 : weight[t];
  }
  return before;
}

// One comparison per profile and wall/on-CPU choice, shared by the panels.
function comparisonOf(P, cpuOnly) {
  if (!P.baseline) return null;
  var key = cpuOnly ? "cpu" : "wall";
  if (!P.compareCache) P.compareCache = {};
  if (!P.compareCache[key]) P.compareCache[key] = compareRuns(P, P.baseline, { cpuOnly: cpuOnly });
  return P.compareCache[key];
}

// Baseline inclusive µs per function index of this run (by identity).
function beforeByFunc(cmp, P) {
  if (cmp.beforeFunc) return cmp.beforeFunc;
  var byKey = new Map();
  cmp.rows.forEach(function (r) { byKey.set(r.key, r.before); });
  var out = new Float64Array(P.funcName.length);
  for (var f = 0; f < out.length; f++) out[f] = byKey.get(cmp.keysA[f]) || 0;
  cmp.beforeFunc = out;
  return out;
}

// The colour of a box of the differential flame graph: red where this run
// spent more than the baseline at the same path, blue where less, by how
// much of the larger of the two; grey within 10 %, which sampling alone
// produces at a few dozen samples.
var SAME = 0.1;

function diffColor(before, after, dark) {
  var m = Math.max(before, after);
  if (!(m > 0)) return null;
  var rel = (after - before) / m;
  if (Math.abs(rel) < SAME) return dark ? "hsl(220,6%,38%)" : "hsl(220,10%,84%)";
  var a = Math.min(1, Math.abs(rel));
  var hue = rel > 0 ? 4 : 214, sat = 35 + 50 * a, light = dark ? 42 - 12 * a : 86 - 32 * a;
  return "hsl(" + hue + "," + sat.toFixed(0) + "%," + light.toFixed(0) + "%)";
}

function fmtSec(us) {
  var s = us / 1e6;
  if (s === 0) return "0 s";
  return (s >= 10 ? s.toFixed(1) : s >= 0.1 ? s.toFixed(2) : s.toFixed(3)) + " s";
}

function fmtChange(before, after) {
  if (!(before > 0)) return after > 0 ? "new" : "±0 %";
  var p = ((after - before) / before) * 100;
  return (p >= 0 ? "+" : "\u2212") + Math.abs(p).toFixed(Math.abs(p) < 10 ? 1 : 0) + " %";
}

function fmtDate(ns) {
  if (!(ns > 0)) return "";
  return new Date(ns / 1e6).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

export { baselineAtNodes, beforeByFunc, compareRuns, comparisonOf, diffColor, fmtChange, fmtDate, fmtSec, matchIdentities, PASS_THROUGH };
