// stackchart.js — one thread's stacks in time order (a "stack chart").
//
// The flame graph answers "where did the time go"; this answers "what was
// the thread doing when". It is drawn at pixel resolution: for each pixel
// column the sample covering that instant is looked up (binary search in
// the thread's own sample list) and its function path is laid down; equal
// neighbours merge into boxes. The cost is width × depth, whatever the
// number of samples, so a million-sample profile pans as fast as a small one.

import { guard, fmtUs } from "./util.js";
import { el, isDark, sizeCanvas } from "./dom.js";
import { ROW_H, MAX_ROWS } from "./flame.js";
import { SAMPLE_ON_CPU } from "./constants.js";

function StackChart(host, info, opts) {
  this.host = host;
  this.info = info;
  this.opts = opts || {};
  this.M = null;
  this.thread = 0;
  this.range = null;
  this.match = null;
  this.hover = null;
  this.perThread = {};
  // fnodes from the top of the stack down to the focus function's caller:
  // frames every step sample shares, so leaving them out puts the user's
  // own code on the first row
  this.skip = null;
  host.classList.add("flame");
  this.scroller = el("div", "flame-scroll");
  this.canvas = el("canvas", "flame-canvas");
  this.canvas.setAttribute("role", "img");
  this.canvas.setAttribute("aria-label", "stack chart");
  this.empty = el("div", "flame-empty", "No samples of this thread in this range.");
  this.tip = el("div", "tooltip");
  this.tip.hidden = true;
  this.scroller.appendChild(this.canvas);
  host.appendChild(this.scroller);
  host.appendChild(this.empty);
  host.appendChild(this.tip);
  var self = this;
  this.canvas.addEventListener("mousemove", guard(function (e) { self.onMove(e); }));
  this.canvas.addEventListener("mouseleave", guard(function () {
    self.hover = null;
    self.tip.hidden = true;
    self.draw();
  }));
  // a drag selects a time range (as on the timeline), a click a function
  this.canvas.addEventListener("mousedown", guard(function (e) {
    e.preventDefault();
    self.down = e.clientX;
  }));
  this.canvas.addEventListener("mouseup", guard(function (e) {
    if (self.down === undefined || self.down === null) return;
    var x0 = self.down;
    self.down = null;
    if (Math.abs(e.clientX - x0) > 4 && self.opts.onRange) {
      var r = self.canvas.getBoundingClientRect(), span = self.range[1] - self.range[0];
      var a = Math.min(x0, e.clientX) - r.left, b = Math.max(x0, e.clientX) - r.left;
      a = Math.max(0, a);
      b = Math.min(self.width, b);
      self.opts.onRange([self.range[0] + (a / self.width) * span, self.range[0] + (b / self.width) * span]);
      return;
    }
    var box = self.hit(e);
    if (box && self.opts.onSelect) self.opts.onSelect(box.func);
  }));
  if (window.ResizeObserver) {
    new ResizeObserver(guard(function () {
      if (self.M && self.host.clientWidth !== self.lastWidth) self.render();
    })).observe(host);
  }
}

// Sample indices of one thread, in time order (built once per thread).
StackChart.prototype.samplesOf = function (th) {
  var list = this.perThread[th];
  if (list) return list;
  var P = this.M.P, n = P.sampleT.length, count = 0, i;
  for (i = 0; i < n; i++) if (P.sampleThread[i] === th) count++;
  list = new Int32Array(count);
  for (i = 0, count = 0; i < n; i++) if (P.sampleThread[i] === th) list[count++] = i;
  this.perThread[th] = list;
  return list;
};

StackChart.prototype.set = function (M, thread, range, duration, cpuOnly) {
  if (this.M !== M) this.perThread = {};
  this.M = M;
  this.thread = thread;
  this.range = range || [0, duration];
  this.cpuOnly = cpuOnly;
  this.render();
};

StackChart.prototype.setMatch = function (match) {
  this.match = match;
  this.draw();
};

StackChart.prototype.layout = function () {
  var M = this.M, P = M.P, W = this.host.clientWidth;
  this.lastWidth = W;
  var list = this.samplesOf(this.thread);
  var T = P.sampleT, Wt = P.sampleWeight, st = P.sampleStack, sf = P.sampleFlags;
  var t0 = this.range[0], t1 = this.range[1], span = Math.max(t1 - t0, 1);
  var open = [], boxes = [], maxDepth = -1, path = [], skip = this.skip && this.skip.length ? this.skip : null;
  var any = false;
  var close = function (d, x) {
    var b = open[d];
    if (b) {
      b.x1 = x;
      boxes.push(b);
      open[d] = null;
    }
  };
  for (var x = 0; x <= W; x++) {
    path.length = 0;
    if (x < W) {
      var t = t0 + ((x + 0.5) / W) * span;
      // first sample of the thread at or after t, if it covers t
      var lo = 0, hi = list.length;
      while (lo < hi) {
        var mid = (lo + hi) >>> 1;
        if (T[list[mid]] < t) lo = mid + 1;
        else hi = mid;
      }
      if (lo < list.length) {
        var s = list[lo];
        if (T[s] - Wt[s] <= t && (!this.cpuOnly || sf[s] & SAMPLE_ON_CPU)) {
          for (var fn = M.stackFn[st[s]]; fn > 0; fn = M.parent[fn]) path.push(fn);
          path.reverse();
          if (skip) {
            var k = 0;
            while (k < skip.length && k < path.length - 1 && path[k] === skip[k]) k++;
            if (k) path.splice(0, k);
          }
          any = true;
        }
      }
    }
    var depth = Math.min(path.length, MAX_ROWS);
    for (var d = 0; d < Math.max(depth, open.length); d++) {
      var fnode = d < depth ? path[d] : -1;
      var b = open[d];
      if (b && b.fn === fnode && (d === 0 || open[d - 1] === b.parent)) continue;
      close(d, x);
      if (fnode >= 0) {
        open[d] = { fn: fnode, func: M.func[fnode], x0: x, x1: x, d: d, parent: d ? open[d - 1] : null };
        if (d > maxDepth) maxDepth = d;
      }
    }
    open.length = depth;
  }
  this.boxes = boxes;
  this.rows = maxDepth + 1;
  this.width = W;
  this.any = any;
};

StackChart.prototype.render = function () {
  if (!this.M || !this.host.clientWidth) return;
  this.layout();
  this.empty.hidden = this.any;
  this.scroller.hidden = !this.any;
  sizeCanvas(this.canvas, this.width, Math.max(this.rows, 1) * ROW_H + 2);
  this.draw();
};

StackChart.prototype.draw = function () {
  if (!this.boxes) return;
  var ctx = sizeCanvas(this.canvas, this.width, Math.max(this.rows, 1) * ROW_H + 2);
  var dark = isDark(), info = this.info, match = this.match;
  ctx.clearRect(0, 0, this.width, this.rows * ROW_H + 2);
  ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  ctx.textBaseline = "middle";
  var charW = ctx.measureText("abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJ").width / 36;
  var dim = dark ? "#30343b" : "#e6e7ea";
  var text = dark ? "#f1f2f4" : "#1d1f23", dimText = dark ? "#7b808a" : "#9a9ea6";
  for (var i = 0; i < this.boxes.length; i++) {
    var b = this.boxes[i], w = b.x1 - b.x0, y = b.d * ROW_H;
    var matched = match ? match[b.func] === 1 : true;
    ctx.fillStyle = matched ? info.color(b.func, dark) : dim;
    ctx.fillRect(b.x0, y, w >= 4 ? w - 1 : w, ROW_H - 1); // no gaps between slivers
    if (w > 28) {
      var label = info.label(b.func), maxc = Math.floor((w - 8) / charW);
      if (maxc >= 3) {
        if (label.length > maxc) label = label.slice(0, maxc - 1) + "\u2026";
        ctx.fillStyle = matched ? text : dimText;
        ctx.fillText(label, b.x0 + 4, y + ROW_H / 2);
      }
    }
  }
  if (this.hover) {
    var h = this.hover;
    ctx.strokeStyle = dark ? "#e8e8e8" : "#333333";
    ctx.lineWidth = 1;
    ctx.strokeRect(h.x0 + 0.5, h.d * ROW_H + 0.5, Math.max(h.x1 - h.x0 - 2, 1), ROW_H - 2);
  }
};

StackChart.prototype.hit = function (e) {
  if (!this.boxes) return null;
  var r = this.canvas.getBoundingClientRect();
  var x = e.clientX - r.left, d = Math.floor((e.clientY - r.top) / ROW_H);
  for (var i = 0; i < this.boxes.length; i++) {
    var b = this.boxes[i];
    if (b.d === d && x >= b.x0 && x < b.x1) return b;
  }
  return null;
};

StackChart.prototype.onMove = function (e) {
  var b = this.hit(e);
  if (b !== this.hover) {
    this.hover = b;
    this.draw();
  }
  if (!b) {
    this.tip.hidden = true;
    return;
  }
  var span = this.range[1] - this.range[0];
  var ta = this.range[0] + (b.x0 / this.width) * span, tb = this.range[0] + (b.x1 / this.width) * span;
  var tip = this.tip;
  tip.textContent = "";
  tip.appendChild(el("div", "tip-name", this.info.name(b.func) || "<unknown>"));
  if (this.info.location(b.func)) tip.appendChild(el("div", "tip-loc", this.info.location(b.func)));
  tip.appendChild(el("div", "", fmtUs(ta) + " – " + fmtUs(tb) + " (≈" + fmtUs(tb - ta) + ")"));
  tip.appendChild(el("div", "tip-hint", "click: callers and callees in Sandwich"));
  tip.hidden = false;
  var hr = this.host.getBoundingClientRect();
  var x = e.clientX - hr.left + 14, y = e.clientY - hr.top + 14;
  if (x + tip.offsetWidth > this.host.clientWidth) x = Math.max(0, e.clientX - hr.left - tip.offsetWidth - 10);
  tip.style.left = x + "px";
  tip.style.top = y + "px";
};

export { StackChart };
