// heaptime.js — memory over time from HEAP_EVENTS (docs/FORMAT.md, "Memory
// over time"): what was allocated in a time range and still live at its
// end, the live heap of the top allocating functions over time, and what
// was live when the profile ended (LEAKS). Times are µs from the start.

// A tree over the model's function tree with the given bytes per stack.
function bytesTree(M, stacks, bytes, keep) {
  var self = new Float64Array(M.n), count = 0;
  for (var i = 0; i < stacks.length; i++) {
    if (keep && !keep(i)) continue;
    self[M.stackFn[stacks[i]]] += bytes[i];
    count++;
  }
  var total = Float64Array.from(self);
  for (var fn = M.n - 1; fn > 0; fn--) total[M.parent[fn]] += total[fn];
  return { model: M, n: M.n, func: M.func, parent: M.parent, kids: M.kids, self: self, total: total, count: count, nodeCount: null, rootFunc: -1 };
}

// Allocated in [a, b] and still live at b (range null: the whole run, so
// what was allocated while profiling and live at its end).
function liveAtEndOf(M, range) {
  var P = M.P, a = range ? range[0] : -Infinity, b = range ? range[1] : Number.MAX_VALUE; // a live one frees at Infinity
  return bytesTree(M, P.heapStack, P.heapBytes, function (i) {
    var t = P.heapAlloc[i];
    return t >= a && t <= b && P.heapFree[i] > b;
  });
}

function leaksTree(M) {
  return bytesTree(M, M.P.leakStack, M.P.leakLive, null);
}

// The function an allocation is charged to: the innermost Python frame of
// its stack (a "[native malloc]" leaf is the how, not the who).
function allocatingFunc(P, stack) {
  for (var s = stack; s >= 0; s = P.stackParent[s]) {
    var f = P.frameFunc[P.stackFrame[s]];
    if (P.funcKind[f] === 0) return f;
  }
  return P.frameFunc[P.stackFrame[stack]];
}

// Live heap over time: the total and the `top` functions that allocated
// most, each as a step series sampled at `buckets` points (the largest
// value in each bucket, so short peaks show). {t, total, funcs: [{func, v}]}
function heapSeries(P, duration, top, buckets) {
  var n = P.heapStack.length;
  var byFunc = new Map(), fOf = new Int32Array(n);
  for (var i = 0; i < n; i++) {
    var f = allocatingFunc(P, P.heapStack[i]);
    fOf[i] = f;
    byFunc.set(f, (byFunc.get(f) || 0) + P.heapBytes[i]);
  }
  var ranked = Array.from(byFunc.keys()).sort(function (x, y) { return byFunc.get(y) - byFunc.get(x) || x - y; });
  var chosen = ranked.slice(0, top), slot = new Map();
  chosen.forEach(function (f, k) { slot.set(f, k); });
  // +bytes at each allocation, -bytes at each free, in time order
  var ev = [];
  for (i = 0; i < n; i++) {
    ev.push([P.heapAlloc[i], P.heapBytes[i], fOf[i]]);
    if (P.heapFree[i] !== Infinity) ev.push([P.heapFree[i], -P.heapBytes[i], fOf[i]]);
  }
  ev.sort(function (x, y) { return x[0] - y[0] || y[1] - x[1]; });
  var dur = Math.max(duration, 1), t = new Float64Array(buckets), total = new Float64Array(buckets);
  var v = chosen.map(function () { return new Float64Array(buckets); });
  var cur = 0, curF = new Float64Array(chosen.length), j = 0;
  for (var k = 0; k < buckets; k++) {
    var end = dur * (k + 1) / buckets, mx = cur, mxF = Float64Array.from(curF);
    while (j < ev.length && ev[j][0] <= end) {
      cur += ev[j][1];
      var s = slot.get(ev[j][2]);
      if (s !== undefined) curF[s] += ev[j][1];
      if (cur > mx) mx = cur;
      if (s !== undefined && curF[s] > mxF[s]) mxF[s] = curF[s];
      j++;
    }
    t[k] = end;
    total[k] = mx;
    for (s = 0; s < chosen.length; s++) v[s][k] = mxF[s];
  }
  return { t: t, total: total, funcs: chosen.map(function (f, q) { return { func: f, v: v[q] }; }) };
}

export { liveAtEndOf, leaksTree, heapSeries, allocatingFunc };
