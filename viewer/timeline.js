// timeline.js — resource charts on one shared time axis.
//
// All charts share one state: the time under the mouse (crosshair on every
// chart) and the selected range. Dragging on any chart selects a range and
// calls onRange, which recomputes the flame graphs from SAMPLES. Times are
// µs from the profile start everywhere in the viewer.

import { guard, fmtUs, lowerBound } from "./util.js";
import { el, isDark } from "./dom.js";

var CHART_H = 48;

function Timeline(host, duration, opts) {
  this.host = host;
  this.duration = Math.max(duration, 1);
  this.opts = opts || {};
  this.charts = [];
  this.hoverT = null;
  this.sel = null;
  this.drag = null;
  host.classList.add("timeline");
  var self = this;
  this.axis = el("canvas", "tl-axis");
  this.onUp = guard(function (e) { self.endDrag(e); });
  window.addEventListener("mouseup", this.onUp);
  if (window.ResizeObserver) {
    // its first call comes with the first frame: nothing to redo at the same width
    new ResizeObserver(guard(function () { if (host.clientWidth !== self.width) self.render(); })).observe(host);
  }
}

// spec: {title, series: [{label, t (µs), v, color, dash}], format, min, max, note}
function fillLegend(legend, series) {
  legend.textContent = "";
  series.forEach(function (s) {
    var item = el("span", "tl-key");
    var sw = el("i", "tl-swatch" + (s.dash ? " dashed" : ""));
    sw.style.borderColor = s.color;
    sw.style.background = s.dash ? "transparent" : s.color;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(s.label));
    legend.appendChild(item);
  });
}

// Put (or with null, remove) one extra series on a chart, e.g. the time
// the selected function was on the stack.
Timeline.prototype.setExtra = function (chart, series) {
  var spec = chart.spec;
  spec.series = spec.series.filter(function (s) { return !s.extra; });
  if (series) {
    series.extra = true;
    spec.series.push(series);
  }
  fillLegend(chart.legend, spec.series);
  var W = this.host.clientWidth || 800;
  if (W) this.drawChart(chart, W, window.devicePixelRatio || 1, isDark(), true);
  this.readout(chart);
};

Timeline.prototype.addChart = function (spec) {
  var self = this;
  var box = el("div", "tl-chart");
  var head = el("div", "tl-head");
  head.appendChild(el("span", "tl-title", spec.title));
  var legend = el("span", "tl-legend");
  fillLegend(legend, spec.series);
  head.appendChild(legend);
  var readout = el("span", "tl-readout");
  head.appendChild(readout);
  box.appendChild(head);
  var plot = el("div", "tl-plot");
  var canvas = el("canvas", "tl-canvas");
  plot.appendChild(canvas);
  // selection shading and crosshair are DOM overlays: moving them never
  // repaints the chart canvases
  var shadeL = el("div", "tl-shade"), shadeR = el("div", "tl-shade"), cross = el("div", "tl-cross");
  shadeL.hidden = shadeR.hidden = cross.hidden = true;
  plot.appendChild(shadeL);
  plot.appendChild(shadeR);
  plot.appendChild(cross);
  box.appendChild(plot);
  this.host.insertBefore(box, this.axis.parentNode === this.host ? this.axis : null);
  if (this.axis.parentNode !== this.host) this.host.appendChild(this.axis);
  var chart = { spec: spec, canvas: canvas, readout: readout, box: box, shadeL: shadeL, shadeR: shadeR, cross: cross, legend: legend };
  chart.max = chartMax(spec);
  canvas.addEventListener("mousedown", guard(function (e) { self.startDrag(e, chart); }));
  canvas.addEventListener("mousemove", guard(function (e) { self.move(e, chart); }));
  canvas.addEventListener("mouseleave", guard(function () {
    if (!self.drag) self.setHover(null);
  }));
  this.charts.push(chart);
  return chart;
};

function chartMax(spec) {
  var max = spec.min || 0;
  spec.series.forEach(function (s) {
    if (s.dash) return;
    for (var i = 0; i < s.v.length; i++) if (s.v[i] > max) max = s.v[i];
  });
  if (spec.max) max = Math.max(max, spec.max);
  // a limit line far above the data would flatten it; show it only when near
  spec.series.forEach(function (s) {
    if (!s.dash || !s.v.length) return;
    var lim = s.v[s.v.length - 1];
    s.offscale = lim > max * 3 || lim <= 0;
    if (!s.offscale && lim > max) max = lim;
  });
  return max > 0 ? max * 1.08 : 1;
}

// A series' points arrived later (computed after the first frame).
Timeline.prototype.refreshChart = function (chart) {
  chart.max = chartMax(chart.spec);
  fillLegend(chart.legend, chart.spec.series);
  var W = this.host.clientWidth || 800;
  this.drawChart(chart, W, window.devicePixelRatio || 1, isDark(), true);
  this.readout(chart);
};

Timeline.prototype.tAt = function (e, chart) {
  var r = chart.canvas.getBoundingClientRect();
  var x = Math.min(Math.max(e.clientX - r.left, 0), r.width);
  return (x / Math.max(r.width, 1)) * this.duration;
};

Timeline.prototype.startDrag = function (e, chart) {
  e.preventDefault();
  this.drag = { t0: this.tAt(e, chart), x0: e.clientX, chart: chart };
};

Timeline.prototype.move = function (e, chart) {
  var t = this.tAt(e, chart);
  // released outside the (i)frame: the mouseup never came
  if (this.drag && e.buttons === 0) this.endDrag(e);
  if (this.drag) {
    var a = Math.min(this.drag.t0, t), b = Math.max(this.drag.t0, t);
    this.sel = [a, b];
  }
  this.setHover(t);
};

Timeline.prototype.endDrag = function (e) {
  if (!this.drag) return;
  var chart = this.drag.chart;
  var t = this.tAt(e, chart);
  var moved = Math.abs(e.clientX - this.drag.x0) > 3;
  var t0 = this.drag.t0;
  this.drag = null;
  if (moved) {
    this.setRange(Math.min(t0, t), Math.max(t0, t));
  } else {
    this.sel = this.committed || null;
    this.overlays();
  }
};

Timeline.prototype.setRange = function (a, b, silent) {
  if (a === null || a === undefined) {
    this.sel = null;
    this.committed = null;
  } else {
    a = Math.max(0, a);
    b = Math.min(this.duration, b);
    this.sel = [a, b];
    this.committed = [a, b];
  }
  this.overlays();
  if (this.opts.onRange && !silent) this.opts.onRange(this.committed);
};

Timeline.prototype.setHover = function (t) {
  this.hoverT = t;
  this.overlays();
};

// Selection shading, crosshair and readouts: cheap, runs on every mouse move.
Timeline.prototype.overlays = function () {
  var D = this.duration, sel = this.sel, t = this.hoverT;
  var self = this;
  this.charts.forEach(function (c) {
    var W = self.width || c.canvas.clientWidth || 1;
    if (sel) {
      var a = (sel[0] / D) * W, b = (sel[1] / D) * W;
      c.shadeL.hidden = c.shadeR.hidden = false;
      c.shadeL.style.left = "0px";
      c.shadeL.style.width = Math.max(a, 0) + "px";
      c.shadeR.style.left = b + "px";
      c.shadeR.style.width = Math.max(W - b, 0) + "px";
    } else {
      c.shadeL.hidden = c.shadeR.hidden = true;
    }
    if (t !== null) {
      c.cross.hidden = false;
      c.cross.style.left = Math.round((t / D) * W) + "px";
    } else {
      c.cross.hidden = true;
    }
    self.readout(c);
  });
};

Timeline.prototype.readout = function (c) {
  var spec = c.spec, fmt = spec.format, t = this.hoverT;
  if (t !== null) {
    var parts = [fmtUs(t)];
    spec.series.forEach(function (s) {
      if (s.t.length) parts.push(s.label + " " + fmt(valueAt(s, t)));
    });
    c.readout.textContent = parts.join("  ·  ");
    return;
  }
  var peaks = [];
  spec.series.forEach(function (s) {
    if (!s.v.length) return;
    if (s.dash) { peaks.push(s.label + " " + fmt(s.v[s.v.length - 1])); return; }
    var m = -Infinity;
    for (var i = 0; i < s.v.length; i++) if (s.v[i] > m) m = s.v[i];
    peaks.push("peak " + s.label + " " + fmt(m));
  });
  c.readout.textContent = peaks.join("  ·  ");
};

function valueAt(s, t) {
  var i = lowerBound(s.t, t);
  if (i >= s.t.length) i = s.t.length - 1;
  if (i > 0 && Math.abs(s.t[i - 1] - t) < Math.abs(s.t[i] - t)) i--;
  return i >= 0 ? s.v[i] : NaN;
}

Timeline.prototype.render = function () {
  var W = this.host.clientWidth || 800;
  this.width = W; // every chart's: overlays() reads no layout
  var dpr = window.devicePixelRatio || 1;
  var dark = isDark();
  var self = this;
  this.charts.forEach(function (c) { self.drawChart(c, W, dpr, dark); });
  this.drawAxis(W, dpr, dark);
  this.overlays();
};

Timeline.prototype.drawChart = function (c, W, dpr, dark, force) {
  var cv = c.canvas, D = this.duration;
  // charts change only with their width or theme: skip identical repaints
  var key = W + ":" + dpr + ":" + dark;
  if (c.drawn === key && !force) return;
  c.drawn = key;
  if (cv.width !== Math.round(W * dpr)) {
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(CHART_H * dpr);
    cv.style.width = W + "px";
    cv.style.height = CHART_H + "px";
  }
  var ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, CHART_H);
  var grid = dark ? "rgba(255,255,255,0.07)" : "rgba(0,0,0,0.06)";
  ctx.fillStyle = grid;
  for (var g = 1; g < 4; g++) ctx.fillRect(0, Math.round((CHART_H * g) / 4), W, 1);
  var max = c.max, spec = c.spec;
  var xOf = function (t) { return (t / D) * W; };
  var yOf = function (v) { return CHART_H - 1 - (v / max) * (CHART_H - 4); };
  spec.series.forEach(function (raw) {
    if (!raw.t.length) return;
    var s = raw.dash ? raw : decimate(raw, W, D);
    if (s.dash) {
      if (s.offscale) return;
      ctx.save();
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      for (var i = 0; i < s.t.length; i++) {
        var x = xOf(s.t[i]), y = yOf(s.v[i]);
        if (i === 0) ctx.moveTo(0, y);
        ctx.lineTo(x, y);
      }
      ctx.lineTo(W, yOf(s.v[s.v.length - 1]));
      ctx.stroke();
      ctx.restore();
      return;
    }
    // A point reports the interval before it (a rate since the last poll,
    // or a level then), so the first value is held back to t = 0: a short
    // run with a single poll still draws.
    var x0 = xOf(s.t[0]), xn = xOf(s.t[s.t.length - 1]);
    ctx.beginPath();
    ctx.moveTo(0, CHART_H);
    ctx.lineTo(0, yOf(s.v[0]));
    for (var j = 0; j < s.t.length; j++) ctx.lineTo(xOf(s.t[j]), yOf(s.v[j]));
    ctx.lineTo(xn, CHART_H);
    ctx.closePath();
    ctx.globalAlpha = spec.series.length > 1 ? 0.14 : 0.24;
    ctx.fillStyle = s.color;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.beginPath();
    ctx.moveTo(0, yOf(s.v[0]));
    for (j = 0; j < s.t.length; j++) ctx.lineTo(xOf(s.t[j]), yOf(s.v[j]));
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.stroke();
    if (s.t.length === 1 || x0 < 0) {
      ctx.beginPath();
      ctx.arc(x0, yOf(s.v[0]), 2.5, 0, 2 * Math.PI);
      ctx.fillStyle = s.color;
      ctx.fill();
    }
  });
};

// At most two points (min, max) per pixel column: an hour at 10 Hz draws
// as fast as a minute.
function decimate(s, W, D) {
  var n = s.t.length;
  if (n <= W * 2) return s;
  if (s.dec && s.decW === W) return s.dec;
  var t = [], v = [];
  var col = -1, lo = 0, hi = 0, tlo = 0, thi = 0;
  var flush = function () {
    if (col < 0) return;
    if (tlo <= thi) { t.push(tlo, thi); v.push(lo, hi); }
    else { t.push(thi, tlo); v.push(hi, lo); }
  };
  for (var i = 0; i < n; i++) {
    var c = Math.floor((s.t[i] / D) * W);
    if (c !== col) {
      flush();
      col = c;
      lo = hi = s.v[i];
      tlo = thi = s.t[i];
    } else {
      if (s.v[i] < lo) { lo = s.v[i]; tlo = s.t[i]; }
      if (s.v[i] > hi) { hi = s.v[i]; thi = s.t[i]; }
    }
  }
  flush();
  s.dec = { t: t, v: v, color: s.color, label: s.label };
  s.decW = W;
  return s.dec;
}

// One unit for the whole axis, chosen from the run's length.
function fmtAxis(t, step, D) {
  if (D < 2e3) return t.toFixed(0) + " µs";
  if (D < 2e6) return (t / 1e3).toFixed(step >= 1e3 ? 0 : 1) + " ms";
  if (D < 180e6) return (t / 1e6).toFixed(step >= 1e6 ? 0 : step >= 1e5 ? 1 : 2) + " s";
  var s = Math.round(t / 1e6), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
  return h ? h + ":" + mm : mm;
}

function niceStep(span, target) {
  var raw = span / target;
  if (span >= 180e6) {
    // minutes-and-seconds axis: steps people count in
    var steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    for (var i = 0; i < steps.length; i++) if (steps[i] * 1e6 >= raw) return steps[i] * 1e6;
    return Math.ceil(raw / 3600e6) * 3600e6;
  }
  var p = Math.pow(10, Math.floor(Math.log10(raw)));
  var m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

Timeline.prototype.drawAxis = function (W, dpr, dark) {
  var cv = this.axis, H = 20;
  if (cv.width !== Math.round(W * dpr)) {
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(H * dpr);
    cv.style.width = W + "px";
    cv.style.height = H + "px";
  }
  var ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = dark ? "#9aa0aa" : "#6b7079";
  ctx.textBaseline = "top";
  var D = this.duration, step = niceStep(D, Math.max(2, Math.floor(W / 90)));
  for (var t = 0; t <= D + 1e-9; t += step) {
    var x = (t / D) * W;
    ctx.fillRect(Math.round(x), 0, 1, 4);
    var label = fmtAxis(t, step, D);
    var tw = ctx.measureText(label).width;
    ctx.fillText(label, Math.min(Math.max(x - tw / 2, 0), W - tw), 6);
  }
};

export { Timeline };
