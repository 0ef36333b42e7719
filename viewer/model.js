// model.js — the function tree and everything computed from it.
//
// The format's stack tree is keyed by frame (function + current line); the
// card merges by function, so each stack node maps once, at load, onto a
// node of a function tree (parent fnode, function). After that, any view
// (whole run from TOTALS, a time range from SAMPLES, one thread, on-CPU
// only, memory) is one pass over its records adding weight to `self` of a
// fnode, then one reverse pass adding children into parents: both linear
// and allocation-free, which is what keeps a range redraw fast at a million
// samples.

import { lowerBound } from "./util.js";
import { SAMPLE_ON_CPU, FUNC_SYNTHETIC } from "./constants.js";

// The module a file holds, as `import` names it: the part after
// site-packages (or the standard library's folder), a package's __init__
// being the package (profile.py's _module_of).
function moduleOf(path) {
  var p = path.replace(/\\/g, "/");
  var m = /.*\/(?:site|dist)-packages\//.exec(p) || /.*\/lib\/python\d+\.\d+\//.exec(p);
  p = m ? p.slice(m[0].length) : p.slice(p.lastIndexOf("/") + 1);
  var parts = p.split("/");
  parts[parts.length - 1] = parts[parts.length - 1].split(".")[0];
  if (parts[parts.length - 1] === "__init__" && parts.length > 1) parts.pop();
  return parts.filter(function (x) { return x; }).join(".") || path;
}

// Import machinery folded as the Python readers fold it (Profile.fold_imports):
// a chain of <frozen importlib._bootstrap…> frames is one frame "import
// <module>", named by the files the chain runs. Per stack node: the chain's
// first node (-1: not machinery) and the folded function. The folded
// functions are appended to P's FUNCS columns (kind synthetic, no file),
// once, before anything sizes a table by them (buildModel runs first).
function importChains(P) {
  if (P.imports) return P.imports;
  var nst = P.stackParent.length, nf = P.funcName.length, f, i;
  var boot = new Uint8Array(nf), any = false;
  for (f = 0; f < nf; f++) {
    if (P.strings[P.funcFile[f]].lastIndexOf("<frozen importlib._bootstrap", 0) === 0) boot[f] = any = 1;
  }
  var head = new Int32Array(nst).fill(-1), func = new Int32Array(nst).fill(-1);
  P.imports = { head: head, func: func, any: false };
  if (!any) return P.imports;
  var modules = new Map();
  for (i = 0; i < nst; i++) {
    var p = P.stackParent[i];
    f = P.frameFunc[P.stackFrame[i]];
    if (boot[f]) {
      head[i] = p >= 0 && head[p] >= 0 ? head[p] : i;
    } else if (p >= 0 && head[p] >= 0) {
      var set = modules.get(head[p]);
      if (!set) modules.set(head[p], (set = new Set()));
      set.add(moduleOf(P.strings[P.funcFile[f]]));
    }
  }
  var byName = new Map(), names = [];
  for (i = 0; i < nst; i++) {
    if (head[i] !== i) continue;
    var mods = modules.get(i);
    var name = "import " + (mods ? Array.from(mods).sort().join(", ") : "(finding and loading)");
    var g = byName.get(name);
    if (g === undefined) {
      g = nf + names.length;
      byName.set(name, g);
      names.push(name);
    }
    func[i] = g;
  }
  for (i = 0; i < nst; i++) if (head[i] >= 0) func[i] = func[head[i]];
  var grow = function (a) {
    var out = new a.constructor(nf + names.length);
    out.set(a);
    return out;
  };
  P.funcName = grow(P.funcName);
  P.funcFile = grow(P.funcFile);
  P.funcLine = grow(P.funcLine);
  P.funcKind = grow(P.funcKind);
  names.forEach(function (name, k) {
    P.funcName[nf + k] = P.strings.length;
    P.funcKind[nf + k] = FUNC_SYNTHETIC;
    P.strings.push(name);
  });
  P.imports.any = true;
  return P.imports;
}

// fold: the machinery of each import as one frame (importChains), the
// Python readers' default; the card can show it frame by frame.
function buildModel(P, fold) {
  var chains = importChains(P);
  fold = !!fold && chains.any;
  var nst = P.stackParent.length;
  var nfuncs = P.funcName.length;
  var fnParent = [-1], fnFunc = [-1], fnDepth = [0];
  var index = new Map();
  var stackFn = new Int32Array(nst);
  for (var i = 0; i < nst; i++) {
    var h = fold ? chains.head[i] : -1;
    if (h >= 0 && h !== i) {
      stackFn[i] = stackFn[h]; // the rest of a chain is its first frame
      continue;
    }
    var p = P.stackParent[i];
    var pf = p < 0 ? 0 : stackFn[p];
    var f = h >= 0 ? chains.func[i] : P.frameFunc[P.stackFrame[i]];
    var key = pf * (nfuncs + 1) + f;
    var fn = index.get(key);
    if (fn === undefined) {
      fn = fnParent.length;
      index.set(key, fn);
      fnParent.push(pf);
      fnFunc.push(f);
      fnDepth.push(fnDepth[pf] + 1);
    }
    stackFn[i] = fn;
  }
  var n = fnParent.length;
  var kids = new Array(n);
  for (i = 0; i < n; i++) kids[i] = [];
  for (i = 1; i < n; i++) kids[fnParent[i]].push(i);
  var M = {
    P: P,
    n: n,
    nfuncs: nfuncs,
    parent: Int32Array.from(fnParent),
    func: Int32Array.from(fnFunc),
    depth: Int32Array.from(fnDepth),
    kids: kids,
    stackFn: stackFn,
    outer: new Uint8Array(n),
    folded: fold,
    // deterministic backends count calls of each exact stack, samplers samples
    calls: !!(P.meta && P.meta.counts === "calls"),
  };
  markOuter(M);
  return M;
}

// outer[fn] = 1 when no ancestor of fn is the same function: summing the
// totals of outer nodes gives a function's inclusive time without counting
// recursion twice.
function markOuter(M) {
  var onPath = new Int32Array(M.nfuncs + 1);
  var stack = [0], state = [0];
  while (stack.length) {
    var top = stack.length - 1;
    var fn = stack[top];
    var f = M.func[fn];
    if (state[top] === 0) {
      state[top] = 1;
      if (f >= 0) {
        if (onPath[f] === 0) M.outer[fn] = 1;
        onPath[f]++;
      }
      var k = M.kids[fn];
      for (var j = k.length - 1; j >= 0; j--) {
        stack.push(k[j]);
        state.push(0);
      }
    } else {
      if (f >= 0) onPath[f]--;
      stack.pop();
      state.pop();
    }
  }
}

// opts: {mask: null (every thread) | Uint8Array per thread, cpuOnly: bool,
// range: null | [t0_us, t1_us]}
// Returns a weighted tree over the model's fnodes (weights in µs).
function aggregateCpu(M, opts) {
  var P = M.P;
  var self = new Float64Array(M.n), cnt = new Float64Array(M.n);
  var stackFn = M.stackFn, mask = opts.mask, cpu = opts.cpuOnly;
  var count = 0, i, fn;
  if (!opts.range) {
    var ts = P.totStack, tt = P.totThread, tf = P.totFlags, tw = P.totWeight, tc = P.totCount;
    for (i = 0; i < ts.length; i++) {
      if (mask && !mask[tt[i]]) continue;
      if (cpu && !(tf[i] & SAMPLE_ON_CPU)) continue;
      fn = stackFn[ts[i]];
      self[fn] += tw[i];
      cnt[fn] += tc[i];
      count += tc[i];
    }
  } else {
    var T = P.sampleT, ss = P.sampleStack, st = P.sampleThread, sf = P.sampleFlags, sw = P.sampleWeight;
    var lo = lowerBound(T, opts.range[0]), hi = lowerBound(T, opts.range[1]);
    for (i = lo; i < hi; i++) {
      if (mask && !mask[st[i]]) continue;
      if (cpu && !(sf[i] & SAMPLE_ON_CPU)) continue;
      fn = stackFn[ss[i]];
      self[fn] += sw[i];
      cnt[fn]++;
      count++;
    }
  }
  var tree = finishTree(M, self, count);
  // A node's samples include its callees'; a node's calls are its own
  // (calls of that function at that path), never summed up the tree.
  if (!M.calls) for (fn = M.n - 1; fn > 0; fn--) cnt[M.parent[fn]] += cnt[fn];
  tree.nodeCount = cnt;
  return tree;
}

// The whole run of every thread (wall or on-CPU), computed once per model:
// the first view, the step's focus and the comparison all read it.
function wholeRunTree(M, cpuOnly) {
  var k = cpuOnly ? "cpu" : "wall";
  if (!M.whole) M.whole = {};
  return M.whole[k] || (M.whole[k] = aggregateCpu(M, { mask: null, cpuOnly: !!cpuOnly, range: null }));
}

// process >= 0: only that process's rows (each at its own heap peak).
function aggregateMemory(M, which, process) {
  var P = M.P;
  var self = new Float64Array(M.n);
  var col = which === "alloc" ? P.memAlloc : P.memLive;
  var only = process >= 0 && P.processes.length > 1;
  for (var i = 0; i < P.memStack.length; i++) {
    if (only && P.memProcess[i] !== process) continue;
    self[M.stackFn[P.memStack[i]]] += col[i];
  }
  return finishTree(M, self, P.memStack.length);
}

function finishTree(M, self, count) {
  var total = Float64Array.from(self);
  var parent = M.parent;
  for (var fn = M.n - 1; fn > 0; fn--) total[parent[fn]] += total[fn];
  return {
    model: M,
    n: M.n,
    func: M.func,
    parent: parent,
    kids: M.kids,
    self: self,
    total: total,
    count: count,
    nodeCount: null,
    rootFunc: -1,
  };
}

// Per-function self and inclusive totals of a tree (recursion counted once),
// and counts when the tree has them: calls of the function anywhere, or
// samples with the function on the stack.
function functionTotals(tree) {
  var M = tree.model, nc = tree.nodeCount;
  var selfF = new Float64Array(M.nfuncs), totalF = new Float64Array(M.nfuncs);
  var countF = nc ? new Float64Array(M.nfuncs) : null;
  for (var fn = 1; fn < tree.n; fn++) {
    var f = tree.func[fn];
    selfF[f] += tree.self[fn];
    if (M.outer[fn]) totalF[f] += tree.total[fn];
    if (nc && (M.calls || M.outer[fn])) countF[f] += nc[fn];
  }
  return { self: selfF, total: totalF, count: countF };
}

// Share of the root's total under nodes whose function matches (nested
// matches counted once). match: Uint8Array per function.
function matchedWeight(tree, match) {
  var n = tree.n, covered = new Uint8Array(n), sum = 0;
  for (var fn = 1; fn < n; fn++) {
    var pc = covered[tree.parent[fn]];
    if (pc) {
      covered[fn] = 1;
      continue;
    }
    if (match[tree.func[fn]]) {
      covered[fn] = 1;
      sum += tree.total[fn];
    }
  }
  return sum;
}

// A small standalone tree (sandwich views): nodes added by (parent, func).
function SmallTree(rootFunc) {
  this.func = [rootFunc];
  this.parent = [-1];
  this.kids = [[]];
  this.self = [0];
  this.total = [0];
  this.index = new Map();
  this.rootFunc = rootFunc;
}
SmallTree.prototype.child = function (p, f) {
  var key = p + ":" + f;
  var c = this.index.get(key);
  if (c === undefined) {
    c = this.func.length;
    this.index.set(key, c);
    this.func.push(f);
    this.parent.push(p);
    this.kids.push([]);
    this.self.push(0);
    this.total.push(0);
    this.kids[p].push(c);
  }
  return c;
};

// Callees of function f: the subtrees under every outermost call of f, merged.
function calleesTree(tree, f) {
  var M = tree.model, out = new SmallTree(f);
  for (var fn = 1; fn < tree.n; fn++) {
    if (tree.func[fn] !== f || !M.outer[fn] || tree.total[fn] <= 0) continue;
    out.total[0] += tree.total[fn];
    out.self[0] += tree.self[fn];
    var stack = [[fn, 0]];
    while (stack.length) {
      var top = stack.pop();
      var k = tree.kids[top[0]];
      for (var j = 0; j < k.length; j++) {
        var c = k[j];
        if (tree.total[c] <= 0) continue;
        var oc = out.child(top[1], tree.func[c]);
        out.total[oc] += tree.total[c];
        out.self[oc] += tree.self[c];
        stack.push([c, oc]);
      }
    }
  }
  out.n = out.func.length;
  return out;
}

// Callers of function f: f at the root, each level one caller further out.
function callersTree(tree, f) {
  var M = tree.model, out = new SmallTree(f);
  for (var fn = 1; fn < tree.n; fn++) {
    if (tree.func[fn] !== f || !M.outer[fn] || tree.total[fn] <= 0) continue;
    var w = tree.total[fn];
    out.total[0] += w;
    var node = 0, p = tree.parent[fn];
    while (p > 0) {
      node = out.child(node, tree.func[p]);
      out.total[node] += w;
      p = tree.parent[p];
    }
    out.self[node] += w;
  }
  out.n = out.func.length;
  return out;
}

// Add the interval [a, b) (µs) to buckets of width bw: a sample stands for
// the time before it, so splitting at bucket edges keeps the curve free of
// aliasing wiggles (25 vs 26 samples per bucket).
function spread(v, bw, a, b) {
  var B = v.length;
  if (a < 0) a = 0;
  var i = Math.floor(a / bw), j = Math.floor(b / bw);
  if (i >= B) i = B - 1;
  if (j >= B) j = B - 1;
  if (i === j) {
    v[i] += b - a;
    return;
  }
  v[i] += (i + 1) * bw - a;
  for (var k = i + 1; k < j; k++) v[k] += bw;
  v[j] += b - j * bw;
}

// How much of each time bucket function f was on the stack (any depth),
// as % of one core, from SAMPLES with the current thread / on-CPU filter.
function functionActivity(M, f, opts, duration, buckets) {
  var P = M.P, nst = P.stackParent.length;
  var under = new Uint8Array(M.n), has = new Uint8Array(nst), i;
  // a fnode's parent has a smaller index (it was made first)
  for (i = 1; i < M.n; i++) under[i] = M.func[i] === f || under[M.parent[i]] ? 1 : 0;
  for (i = 0; i < nst; i++) has[i] = under[M.stackFn[i]];
  var B = buckets, w = duration / B;
  var v = new Float64Array(B), t = new Float64Array(B);
  var T = P.sampleT, ss = P.sampleStack, st = P.sampleThread, sf = P.sampleFlags, sw = P.sampleWeight;
  var mask = opts.mask, cpu = opts.cpuOnly;
  for (i = 0; i < T.length; i++) {
    if (!has[ss[i]]) continue;
    if (mask && !mask[st[i]]) continue;
    if (cpu && !(sf[i] & SAMPLE_ON_CPU)) continue;
    spread(v, w, T[i] - sw[i], T[i]);
  }
  for (i = 0; i < B; i++) {
    v[i] = (100 * v[i]) / w;
    t[i] = (i + 0.5) * w;
  }
  return { t: t, v: v };
}

// Per-line attribution of function f: FRAMES carry the line each frame was
// at, so for every record the innermost frame of f says where in f the time
// went — `self` when f is the leaf (the line itself ran), `total` whatever
// it called from there. Same filters as aggregateCpu. Lines sorted by total.
function lineTotals(M, f, opts) {
  var P = M.P, nst = P.stackParent.length;
  var inner = new Int32Array(nst), leaf = new Uint8Array(nst);
  for (var i = 0; i < nst; i++) {
    var fr = P.stackFrame[i], p = P.stackParent[i];
    if (P.frameFunc[fr] === f) {
      inner[i] = P.frameLine[fr];
      leaf[i] = 1;
    } else {
      inner[i] = p >= 0 ? inner[p] : -1;
    }
  }
  var total = new Map(), self = new Map(), sum = 0;
  var add = function (s, w) {
    var line = inner[s];
    if (line < 0) return;
    total.set(line, (total.get(line) || 0) + w);
    if (leaf[s]) self.set(line, (self.get(line) || 0) + w);
    sum += w;
  };
  var mask = opts.mask, cpu = opts.cpuOnly, k;
  if (!opts.range) {
    for (k = 0; k < P.totStack.length; k++) {
      if (mask && !mask[P.totThread[k]]) continue;
      if (cpu && !(P.totFlags[k] & SAMPLE_ON_CPU)) continue;
      add(P.totStack[k], P.totWeight[k]);
    }
  } else {
    var lo = lowerBound(P.sampleT, opts.range[0]), hi = lowerBound(P.sampleT, opts.range[1]);
    for (k = lo; k < hi; k++) {
      if (mask && !mask[P.sampleThread[k]]) continue;
      if (cpu && !(P.sampleFlags[k] & SAMPLE_ON_CPU)) continue;
      add(P.sampleStack[k], P.sampleWeight[k]);
    }
  }
  var rows = [];
  total.forEach(function (w, line) { rows.push({ line: line, total: w, self: self.get(line) || 0 }); });
  rows.sort(function (a, b) { return b.total - a.total || a.line - b.line; });
  return { rows: rows, total: sum };
}

// Per thread, the time not under fnode `node` (the step function's node):
// the work a view zoomed on it would leave out; `inside` the time under it.
// Same filters as aggregateCpu.
function timeOutside(M, node, opts) {
  var P = M.P, under = new Uint8Array(M.n), fn;
  // a fnode's parent has a smaller index (it was made first)
  for (fn = 1; fn < M.n; fn++) under[fn] = fn === node || under[M.parent[fn]] ? 1 : 0;
  var nt = P.threadTid.length, out = new Float64Array(nt), inside = new Float64Array(nt);
  var mask = opts.mask, cpu = opts.cpuOnly, k;
  if (!opts.range) {
    for (k = 0; k < P.totStack.length; k++) {
      if ((mask && !mask[P.totThread[k]]) || (cpu && !(P.totFlags[k] & SAMPLE_ON_CPU))) continue;
      (under[M.stackFn[P.totStack[k]]] ? inside : out)[P.totThread[k]] += P.totWeight[k];
    }
  } else {
    var T = P.sampleT, lo = lowerBound(T, opts.range[0]), hi = lowerBound(T, opts.range[1]);
    var ss = P.sampleStack, st = P.sampleThread, sf = P.sampleFlags, sw = P.sampleWeight;
    for (k = lo; k < hi; k++) {
      if ((mask && !mask[st[k]]) || (cpu && !(sf[k] & SAMPLE_ON_CPU))) continue;
      (under[M.stackFn[ss[k]]] ? inside : out)[st[k]] += sw[k];
    }
  }
  return { outside: out, inside: inside };
}

// Each thread's recorded time, and the part of it on CPU (from TOTALS).
function threadTimes(P) {
  var n = P.threadTid.length, wall = new Float64Array(n), cpu = new Float64Array(n), any = false;
  for (var k = 0; k < P.totThread.length; k++) {
    wall[P.totThread[k]] += P.totWeight[k];
    if (P.totFlags[k] & SAMPLE_ON_CPU) {
      cpu[P.totThread[k]] += P.totWeight[k];
      any = true;
    }
  }
  return { wall: wall, cpu: cpu, anyCpu: any };
}

// The node the graph opens on: META "focus" names a function (the step
// function); the heaviest outermost node of that function in the whole run,
// or -1. A profile name ending in ".<focus>" names it too.
// `name` may also be {name, file} (META entry): that exact function.
function focusNode(M, tree, name) {
  var P = M.P, nf = P.funcName.length, want = new Uint8Array(nf), any = false, f;
  if (name && typeof name === "object" && typeof name.name === "string") {
    for (f = 0; f < nf; f++) if (P.strings[P.funcName[f]] === name.name && P.strings[P.funcFile[f]] === name.file) want[f] = any = 1;
    name = "";
  } else if (typeof name !== "string" || !name) return -1;
  for (f = 0; f < nf && name; f++) if (P.strings[P.funcName[f]] === name) want[f] = any = 1;
  if (!any && name) {
    var suffix = "." + name;
    for (f = 0; f < nf; f++) {
      var s = P.strings[P.funcName[f]];
      if (s && s.length > suffix.length && s.slice(-suffix.length) === suffix) want[f] = any = 1;
    }
  }
  if (!any) return -1;
  var best = -1;
  for (var fn = 1; fn < tree.n; fn++) {
    if (!want[tree.func[fn]] || !M.outer[fn] || !(tree.total[fn] > 0)) continue;
    if (best < 0 || tree.total[fn] > tree.total[best]) best = fn;
  }
  return best;
}

export {
  focusNode, buildModel, importChains, aggregateCpu, wholeRunTree, aggregateMemory, functionTotals, matchedWeight, calleesTree, callersTree,
  spread, functionActivity, lineTotals, threadTimes, timeOutside,
};
