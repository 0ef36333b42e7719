// flame.js — a canvas icicle graph (root on top) over any weighted tree.
//
// The tree is columns (func, parent, kids, self, total) with node 0 the
// root, so the same widget draws the CPU graph, the memory graph and both
// halves of the sandwich. Layout keeps only boxes at least a third of a
// pixel wide, so a frame costs work proportional to what is visible, not to
// the number of nodes. Labels are drawn with fillText: a function name is
// never parsed as HTML.

import { guard, pct, fmtCount } from "./util.js";
import { el, isDark, sizeCanvas } from "./dom.js";

var ROW_H = 18;
// Rows drawn at most: a canvas taller than this costs more memory than it
// shows; deeper frames are reached by zooming in.
var MAX_ROWS = 400;
// Ancestors drawn (faded) above a zoomed node: the nearest few give context;
// the whole path is in the breadcrumb. A card that opens on the step
// function would otherwise start with a dozen rows of framework frames.
var CONTEXT_ROWS = 2;

function FlameGraph(host, info, opts) {
  this.host = host;
  this.info = info;
  this.opts = opts || {};
  this.tree = null;
  this.zoom = 0;
  this.hover = -1;
  this.selected = -1;
  this.match = null;
  this.rects = null;
  // nodes drawn beside the zoomed one, at its depth: the card's first view
  // puts the other threads' work next to the step function
  this.beside = [];
  host.classList.add("flame");
  this.scroller = el("div", "flame-scroll");
  this.canvas = el("canvas", "flame-canvas");
  this.canvas.setAttribute("role", "img");
  this.canvas.setAttribute("aria-label", opts.ariaLabel || "flame graph");
  this.empty = el("div", "flame-empty", opts.emptyText || "No samples in this view.");
  this.more = el("div", "flame-more", "Deeper frames are not drawn: click a box to zoom in.");
  this.more.hidden = true;
  this.tip = el("div", "tooltip");
  this.tip.hidden = true;
  this.scroller.appendChild(this.canvas);
  host.appendChild(this.scroller);
  host.appendChild(this.more);
  host.appendChild(this.empty);
  host.appendChild(this.tip);
  var self = this;
  this.canvas.addEventListener("mousemove", guard(function (e) { self.onMove(e); }));
  this.canvas.addEventListener("mouseleave", guard(function () { self.setHover(-1); self.tip.hidden = true; }));
  this.canvas.addEventListener("click", guard(function (e) { self.onClick(e); }));
  this.lastWidth = 0;
  if (window.ResizeObserver) {
    new ResizeObserver(guard(function () {
      var w = self.host.clientWidth;
      if (w !== self.lastWidth && self.tree) self.render();
    })).observe(host);
  }
}

// keepZoom: stay on the zoomed node while it has weight in the new tree;
// beside (optional): the nodes to draw beside it then.
FlameGraph.prototype.setTree = function (tree, keepZoom, beside) {
  var oldZoom = this.zoom;
  this.tree = tree;
  this.rects = null; // the old layout belongs to the old tree
  this.hover = -1;
  if (!keepZoom || oldZoom >= tree.n || !(tree.total[oldZoom] > 0)) {
    this.zoom = 0;
    this.beside = [];
    this.selected = -1;
  } else if (beside) {
    this.beside = beside;
  }
  if (this.selected >= tree.n) this.selected = -1;
  this.render();
};

FlameGraph.prototype.setEmptyText = function (text) {
  this.empty.textContent = text;
};

FlameGraph.prototype.setMatch = function (match) {
  this.match = match;
  this.draw();
};

FlameGraph.prototype.setZoom = function (node, beside) {
  if (!this.tree || node < 0 || node >= this.tree.n) return;
  this.zoom = node;
  this.beside = beside || [];
  this.selected = node;
  this.render();
  if (this.opts.onZoom) this.opts.onZoom(node);
};

FlameGraph.prototype.ancestors = function (node) {
  var chain = [];
  for (var n = node; n >= 0; n = this.tree.parent[n]) chain.push(n);
  return chain.reverse();
};

FlameGraph.prototype.nodeLabel = function (node) {
  var f = this.tree.func[node];
  if (f < 0) return this.opts.rootLabel || "all";
  return this.info.label(f);
};

FlameGraph.prototype.layout = function () {
  var t = this.tree, W = this.host.clientWidth || 800;
  this.lastWidth = W;
  var xs = [], ws = [], ds = [], ns = [], rows = [];
  var chain = this.ancestors(this.zoom);
  if (chain.length > CONTEXT_ROWS + 1) chain = chain.slice(-CONTEXT_ROWS - 1);
  function push(x, w, d, n) {
    if (!rows[d]) rows[d] = [];
    rows[d].push(xs.length);
    xs.push(x); ws.push(w); ds.push(d); ns.push(n);
  }
  var total = t.total, kids = t.kids;
  var segs = [this.zoom].concat(this.beside.filter(function (b) { return b > 0 && b < t.n && total[b] > 0; }));
  var zt = 0;
  segs.forEach(function (n) { zt += total[n]; });
  var scale = zt > 0 ? W / zt : 0;
  var base = chain.length - 1;
  // context rows span the zoomed node's own part of the width
  for (var i = 0; i < chain.length - 1; i++) push(0, total[this.zoom] * scale, i, chain[i]);
  var maxDepth = base, truncated = false, x0 = 0;
  for (var sgi = 0; sgi < segs.length && zt > 0; sgi++) {
    var stack = [segs[sgi], x0, base];
    x0 += total[segs[sgi]] * scale;
    while (stack.length) {
      var d = stack.pop(), x = stack.pop(), n = stack.pop();
      push(x, total[n] * scale, d, n);
      if (d > maxDepth) maxDepth = d;
      var k = kids[n];
      if (!k.length) continue;
      if (d + 1 >= MAX_ROWS) {
        truncated = true;
        continue;
      }
      var sorted = k.length === 1 ? k : k.slice().sort(function (a, b) { return total[b] - total[a]; });
      var cx = x, pending = [];
      for (var j = 0; j < sorted.length; j++) {
        var c = sorted[j], w = total[c] * scale;
        if (w <= 0) continue;
        if (w >= 0.35) pending.push(c, cx, d + 1);
        cx += w;
      }
      for (j = pending.length - 3; j >= 0; j -= 3) stack.push(pending[j], pending[j + 1], pending[j + 2]);
    }
  }
  this.viewTotal = zt;
  this.rects = { x: xs, w: ws, d: ds, n: ns, rows: rows, depth: maxDepth + 1, width: W, base: base, truncated: truncated };
};

FlameGraph.prototype.render = function () {
  if (!this.tree) return;
  if (!this.host.clientWidth) {
    this.lastWidth = 0; // hidden: the resize observer draws it when shown
    return;
  }
  var t0 = performance.now();
  this.layout();
  this.layoutMs = performance.now() - t0;
  var empty = !(this.viewTotal > 0);
  this.empty.hidden = !empty;
  this.scroller.hidden = empty;
  this.more.hidden = !this.rects.truncated;
  sizeCanvas(this.canvas, this.rects.width, this.rects.depth * ROW_H + 2);
  var t1 = performance.now();
  this.draw();
  this.drawMs = performance.now() - t1;
};

FlameGraph.prototype.isMatched = function (node) {
  var f = this.tree.func[node];
  return f >= 0 && this.match[f] === 1;
};

FlameGraph.prototype.draw = function () {
  if (!this.rects || !this.tree) return;
  var R = this.rects, info = this.info, tree = this.tree;
  var ctx = sizeCanvas(this.canvas, R.width, R.depth * ROW_H + 2);
  var dark = isDark();
  ctx.clearRect(0, 0, R.width, R.depth * ROW_H + 2);
  ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  ctx.textBaseline = "middle";
  if (!this.charW) this.charW = ctx.measureText("abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJ").width / 36;
  var charW = this.charW;
  var dim = dark ? "#30343b" : "#e6e7ea";
  var dimText = dark ? "#7b808a" : "#9a9ea6";
  var text = dark ? "#f1f2f4" : "#1d1f23";
  var match = this.match;
  // Boxes under 2 px carry no readable colour: adjacent slivers of a row
  // are merged into one run and filled with one neutral colour, so a frame
  // with thousands of them costs a few dozen fillRects.
  var thinColor = dark ? "#7a5a48" : "#e2b49a";
  for (var d = 0; d < R.rows.length; d++) {
    var row = R.rows[d];
    if (!row) continue;
    var runX = -1, runEnd = -1, runMatched = false;
    for (var r = 0; r < row.length; r++) {
      var i = row[r];
      var node = R.n[i], x = R.x[i], w = R.w[i], y = d * ROW_H;
      var f = tree.func[node];
      var matched = match ? f >= 0 && match[f] === 1 : true;
      if (w < 2 && d >= R.base) {
        if (runX >= 0 && x <= runEnd + 0.5 && matched === runMatched) {
          runEnd = x + w;
          continue;
        }
        if (runX >= 0) {
          ctx.fillStyle = runMatched ? thinColor : dim;
          ctx.fillRect(runX, y, Math.max(runEnd - runX, 0.5), ROW_H - 1);
        }
        runX = x;
        runEnd = x + w;
        runMatched = matched;
        continue;
      }
      ctx.globalAlpha = d < R.base ? 0.55 : 1;
      ctx.fillStyle = matched ? (this.opts.nodeColor && this.opts.nodeColor(node, dark)) || info.color(f, dark) : dim;
      ctx.fillRect(x, y, w > 1.5 ? w - 1 : w, ROW_H - 1);
      if (w > 28) {
        var label = this.nodeLabel(node);
        var maxc = Math.floor((w - 8) / charW);
        if (maxc >= 3) {
          if (label.length > maxc) label = label.slice(0, maxc - 1) + "\u2026";
          ctx.fillStyle = matched ? text : dimText;
          ctx.fillText(label, x + 4, y + ROW_H / 2);
        }
      }
    }
    if (runX >= 0) {
      ctx.fillStyle = runMatched ? thinColor : dim;
      ctx.fillRect(runX, d * ROW_H, Math.max(runEnd - runX, 0.5), ROW_H - 1);
    }
  }
  ctx.globalAlpha = 1;
  var outline = function (node, color, width) {
    for (var j = 0; j < R.n.length; j++) {
      if (R.n[j] !== node) continue;
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.strokeRect(R.x[j] + width / 2, R.d[j] * ROW_H + width / 2, Math.max(R.w[j] - 1 - width, 1), ROW_H - 1 - width);
    }
  };
  if (this.hover >= 0) {
    // every box of the hovered function, so recursion and repeated callers show
    var hf = tree.func[this.hover];
    if (hf >= 0) {
      ctx.strokeStyle = dark ? "rgba(255,255,255,0.55)" : "rgba(0,0,0,0.45)";
      ctx.lineWidth = 1;
      for (var j = 0; j < R.n.length; j++) {
        if (tree.func[R.n[j]] !== hf || R.n[j] === this.hover || R.w[j] < 3) continue;
        ctx.strokeRect(R.x[j] + 0.5, R.d[j] * ROW_H + 0.5, R.w[j] - 2, ROW_H - 2);
      }
    }
  }
  if (this.selected >= 0) outline(this.selected, dark ? "#ffffff" : "#111111", 2);
  if (this.hover >= 0) outline(this.hover, dark ? "#e8e8e8" : "#333333", 1);
};

FlameGraph.prototype.hit = function (e) {
  if (!this.rects) return -1;
  var r = this.canvas.getBoundingClientRect();
  var x = e.clientX - r.left, y = e.clientY - r.top;
  var row = this.rects.rows[Math.floor(y / ROW_H)];
  if (!row) return -1;
  var lo = 0, hi = row.length - 1, R = this.rects;
  while (lo <= hi) {
    var mid = (lo + hi) >> 1, idx = row[mid];
    if (x < R.x[idx]) hi = mid - 1;
    else if (x >= R.x[idx] + R.w[idx]) lo = mid + 1;
    else return R.n[idx];
  }
  return -1;
};

FlameGraph.prototype.setHover = function (node) {
  if (node === this.hover) return;
  this.hover = node;
  this.draw();
  if (this.opts.onHover) this.opts.onHover(node);
};

FlameGraph.prototype.onMove = function (e) {
  var node = this.hit(e);
  this.setHover(node);
  if (node < 0) {
    this.tip.hidden = true;
    return;
  }
  this.showTip(node, e);
};

FlameGraph.prototype.showTip = function (node, e) {
  var t = this.tree, f = t.func[node], fmt = this.opts.format || String;
  var root = t.total[0] || 1;
  var tip = this.tip;
  tip.textContent = "";
  tip.appendChild(el("div", "tip-name", f < 0 ? this.nodeLabel(node) : this.info.name(f) || "<unknown>"));
  if (f >= 0 && this.info.location(f)) tip.appendChild(el("div", "tip-loc", this.info.location(f)));
  var grid = el("div", "tip-grid");
  grid.appendChild(el("span", "", "Total"));
  grid.appendChild(el("span", "num", fmt(t.total[node])));
  grid.appendChild(el("span", "num", pct(t.total[node] / root)));
  grid.appendChild(el("span", "", "Self"));
  grid.appendChild(el("span", "num", fmt(t.self[node])));
  grid.appendChild(el("span", "num", pct(t.self[node] / root)));
  if (t.nodeCount && node > 0) {
    // calls of this function at this path (deterministic), or samples under it
    var calls = t.model && t.model.calls;
    grid.appendChild(el("span", "", calls ? "Calls" : "Samples"));
    grid.appendChild(el("span", "num", fmtCount(t.nodeCount[node])));
    grid.appendChild(el("span", "num", ""));
  }
  tip.appendChild(grid);
  tip.appendChild(el("div", "tip-hint", "click to zoom"));
  tip.hidden = false;
  var hr = this.host.getBoundingClientRect();
  var x = e.clientX - hr.left + 14, y = e.clientY - hr.top + 14;
  var tw = tip.offsetWidth, hw = this.host.clientWidth;
  if (x + tw > hw) x = Math.max(0, e.clientX - hr.left - tw - 10);
  // keep it inside the graph: in an auto-sized iframe a tooltip hanging
  // below the page would grow the page
  var th = tip.offsetHeight, hh = this.host.clientHeight;
  if (y + th > hh) {
    if (e.clientY - hr.top - th - 10 >= 0) y = e.clientY - hr.top - th - 10;
    else if (th <= hh) y = hh - th; // beside the cursor; it ignores the mouse
  }
  tip.style.left = x + "px";
  tip.style.top = y + "px";
};

FlameGraph.prototype.onClick = function (e) {
  var node = this.hit(e);
  if (node < 0) return;
  this.tip.hidden = true;
  this.setZoom(node);
  if (this.opts.onSelect) this.opts.onSelect(node);
};

FlameGraph.prototype.zoomOut = function () {
  if (this.zoom > 0) this.setZoom(this.tree.parent[this.zoom]);
};

FlameGraph.prototype.zoomIn = function () {
  var target = this.hover >= 0 ? this.hover : this.selected;
  if (target >= 0 && target !== this.zoom) {
    this.setZoom(target);
    return;
  }
  // no target: step into the heaviest child
  var k = this.tree.kids[this.zoom], best = -1;
  for (var i = 0; i < k.length; i++) if (best < 0 || this.tree.total[k[i]] > this.tree.total[best]) best = k[i];
  if (best >= 0 && this.tree.total[best] > 0) this.setZoom(best);
};

export { FlameGraph, ROW_H, MAX_ROWS };
