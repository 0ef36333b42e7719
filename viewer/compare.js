// compare.js — this run against its baseline (issue 15), from TOTALS only.
//
// The baseline travels as section BASELINE (docs/FORMAT.md): its TOTALS and
// the table rows this profile lacks, decoded (decode.js) into a profile of
// its own whose tables are this one's followed by those rows. Functions are matched by identity, name
// and file, never by line, as Profile.diff does in Python: exact identity
// first, then name and file name when exactly one such function is left on
// each side (the same code unpacked elsewhere). Everything here is whole-run
// and all-threads: a baseline has no time order, and its threads are other
// threads. No DOM here.

import { buildModel, wholeRunTree } from "./model.js";

function identity(P, f) {
  return P.strings[P.funcName[f]] + "\u0000" + P.strings[P.funcFile[f]];
}

function baseName(file) {
  var i = Math.max(file.lastIndexOf("/"), file.lastIndexOf("\\"));
  return i < 0 ? file : file.slice(i + 1);
}

// Per identity id: self and inclusive µs (a function recursing counts once:
// only its outermost nodes add), inclusive µs per caller→callee edge (key
// caller * nid + callee), and the whole. One pass over the model's nodes.
function identityTotals(M, tree, ids, nid) {
  var self = new Float64Array(nid), total = new Float64Array(nid), edges = new Map();
  for (var fn = 1; fn < M.n; fn++) {
    var id = ids[M.func[fn]];
    self[id] += tree.self[fn];
    if (!M.outer[fn]) continue;
    total[id] += tree.total[fn];
    var pf = M.parent[fn];
    if (pf > 0) {
      var key = ids[M.func[pf]] * nid + id;
      edges.set(key, (edges.get(key) || 0) + tree.total[fn]);
    }
  }
  return { self: self, total: total, edges: edges, whole: tree.total[0] };
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

// M: this run's model. opts: {cpuOnly}. Returns null without a baseline,
// else {before_us, after_us (durations), rows (every function, biggest
// inclusive change first), changes (the functions a change starts in: see
// below), and what baselineAtNodes needs}.
function compareRuns(P, M, B, opts) {
  if (!B) return null;
  var cpu = !!(opts && opts.cpuOnly);
  var keyId = new Map(), keys = [], f;
  var idOf = function (k) {
    var id = keyId.get(k);
    if (id === undefined) {
      id = keys.length;
      keyId.set(k, id);
      keys.push(k);
    }
    return id;
  };
  // folded the same way as this run (which appends the folded frames to B's FUNCS)
  if (!B.models) B.models = {};
  var MB = B.models[M.folded] || (B.models[M.folded] = buildModel(B, M.folded));
  var keysA = [], keysB = [];
  for (f = 0; f < P.funcName.length; f++) keysA.push(identity(P, f));
  for (f = 0; f < B.funcName.length; f++) keysB.push(identity(B, f));
  var map = matchIdentities(Array.from(new Set(keysB)), Array.from(new Set(keysA)));
  var idsA = Int32Array.from(keysA, idOf);
  var idsB = Int32Array.from(keysB, function (k) { return idOf(map.get(k)); });
  var nid = keys.length;
  var treeA = wholeRunTree(M, cpu), treeB = wholeRunTree(MB, cpu);
  var a = identityTotals(M, treeA, idsA, nid), b = identityTotals(MB, treeB, idsB, nid);
  var rows = [];
  for (var id = 0; id < nid; id++) {
    var before = b.total[id], after = a.total[id];
    if (!before && !after) continue;
    var p = keys[id].split("\u0000");
    rows.push({
      id: id, key: keys[id], name: p[0], file: p[1] || "",
      before: before, after: after, delta: after - before,
      beforeShare: b.whole ? before / b.whole : 0, afterShare: a.whole ? after / a.whole : 0,
      selfBefore: b.self[id], selfAfter: a.self[id],
    });
  }
  rows.sort(function (x, y) { return Math.abs(y.delta) - Math.abs(x.delta) || (x.name < y.name ? -1 : 1); });
  return {
    before_us: (B.meta.duration_ns || 0) / 1000,
    after_us: (P.meta.duration_ns || 0) / 1000,
    whole_before: b.whole, whole_after: a.whole,
    rows: rows,
    changes: changeSources(rows, a.edges, b.edges, nid),
    keysA: keysA, idsA: idsA, idsB: idsB, nid: nid, MB: MB, treeB: treeB,
  };
}

// A slower function makes every caller above it slower by as much. The
// list a person reads names where a change starts: a function is left out
// when one callee's edge carries most (80 %) of its change in the same
// direction — the change passes through it.
var PASS_THROUGH = 0.8;

function changeSources(rows, edgesA, edgesB, nid) {
  var passes = new Uint8Array(nid), delta = new Float64Array(nid);
  rows.forEach(function (r) { delta[r.id] = r.delta; });
  var all = new Set(edgesA.keys());
  edgesB.forEach(function (_, e) { all.add(e); });
  all.forEach(function (e) {
    var caller = Math.floor(e / nid), d = (edgesA.get(e) || 0) - (edgesB.get(e) || 0);
    if (delta[caller] && d / delta[caller] >= PASS_THROUGH) passes[caller] = 1;
  });
  return rows.filter(function (r) { return r.delta && !passes[r.id]; });
}

// Inclusive baseline µs at each node of this run's function tree, matching
// the path of identities from the root: what the differential flame graph
// colours by. cmp must be of the same wall/on-CPU choice.
function baselineAtNodes(M, cmp) {
  var before = new Float64Array(M.n);
  if (!cmp) return before;
  var MB = cmp.MB, nid = cmp.nid, byPath = new Map(), fn;
  for (fn = 1; fn < MB.n; fn++) byPath.set(MB.parent[fn] * nid + cmp.idsB[MB.func[fn]], fn);
  var at = new Int32Array(M.n);
  before[0] = cmp.treeB.total[0];
  for (fn = 1; fn < M.n; fn++) {
    var up = at[M.parent[fn]];
    var t = up < 0 ? undefined : byPath.get(up * nid + cmp.idsA[M.func[fn]]);
    at[fn] = t === undefined ? -1 : t;
    before[fn] = t === undefined ? 0 : cmp.treeB.total[t];
  }
  return before;
}

// One comparison per profile and wall/on-CPU choice, shared by the panels.
function comparisonOf(M, cpuOnly) {
  var P = M.P;
  if (!P.baseline) return null;
  var key = (cpuOnly ? "cpu" : "wall") + (M.folded ? " folded" : "");
  if (!P.compareCache) P.compareCache = {};
  if (!P.compareCache[key]) P.compareCache[key] = compareRuns(P, M, P.baseline, { cpuOnly: cpuOnly });
  return P.compareCache[key];
}

// Baseline inclusive µs per function index of this run (by identity).
function beforeByFunc(cmp, P) {
  if (cmp.beforeFunc) return cmp.beforeFunc;
  var byId = new Float64Array(cmp.nid);
  cmp.rows.forEach(function (r) { byId[r.id] = r.before; });
  var out = new Float64Array(P.funcName.length);
  for (var f = 0; f < out.length; f++) out[f] = byId[cmp.idsA[f]];
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
