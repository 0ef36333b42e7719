// panels/timeline.js — resource charts on one time axis; dragging selects
// the time range every other panel follows. The CPU chart also shows the
// sampled threads' on-CPU time and, once a function is selected, its time
// on the stack.

import { registerPanel } from "../registry.js";
import { fmtUnit, fmtBytes, fmtNum, objectOr } from "../util.js";
import { el } from "../dom.js";
import { Timeline } from "../timeline.js";
import { spread, functionActivity } from "../model.js";
import { seriesByName, memoryLimit, hasOnCpu } from "../summary.js";
import { SAMPLE_ON_CPU } from "../constants.js";

var PALETTE = ["#e8743b", "#3b82f6", "#10b981", "#a855f7", "#eab308", "#ec4899", "#14b8a6", "#64748b"];

function toUs(s) {
  var t = new Float64Array(s.t.length);
  for (var i = 0; i < t.length; i++) t[i] = s.t[i] * 1000;
  return t;
}

function nonZero(s) {
  for (var i = 0; i < s.v.length; i++) if (s.v[i] !== 0) return true;
  return false;
}

// Buckets hold ~25 sampling intervals each so the line does not alias.
function activityBuckets(duration, intervalUs) {
  return Math.max(10, Math.min(400, Math.floor(duration / (intervalUs * 25))));
}

function intervalUs(ctx) {
  return (ctx.meta.interval_ns || 0) / 1000 || ctx.duration / Math.max(ctx.P.sampleCount, 1);
}

// Threads on CPU over time from SAMPLES, as a % of one core like cpu_pct.
function activitySeries(P, duration, iv) {
  var n = P.sampleT.length;
  if (!n) return null;
  var B = activityBuckets(duration, iv), w = duration / B;
  var v = new Float64Array(B), t = new Float64Array(B);
  var any = false, T = P.sampleT, W = P.sampleWeight, F = P.sampleFlags;
  for (var i = 0; i < n; i++) {
    if (!(F[i] & SAMPLE_ON_CPU)) continue;
    any = true;
    // most samples lie inside one bucket: no call for them
    var a = T[i] - W[i], j = Math.floor(a / w);
    if (a >= 0 && j < B && T[i] < (j + 1) * w) v[j] += W[i];
    else spread(v, w, a, T[i]);
  }
  if (!any) return null;
  for (i = 0; i < B; i++) {
    v[i] = (100 * v[i]) / w;
    t[i] = (i + 0.5) * w;
  }
  return { t: t, v: v };
}

registerPanel({
  id: "timeline",
  slot: "head",
  order: 40,
  create: function (ctx) {
    var P = ctx.P, duration = ctx.duration;
    var host = el("section", "panel tl-panel");
    host.id = "mfp-timeline";
    var title = el("div", "panel-head");
    title.appendChild(el("h2", "", "Timeline"));
    var hint = "drag across any chart to select a time range";
    if (P.meta.samples_decimation > 1) hint += " · samples kept: every " + P.meta.samples_decimation + "th, so ranges are coarser";
    title.appendChild(el("span", "hint", hint));
    host.appendChild(title);
    var body = el("div", "tl-body");
    host.appendChild(body);
    var tl = new Timeline(body, duration, { onRange: function (r) { ctx.set({ range: r && r[1] > r[0] ? r : null }); } });
    var count = 0, cpuChart = null;
    function series(name, label, color, dash) {
      var s = seriesByName(P, name);
      if (!s || !s.v.length) return null;
      return { label: label, t: toUs(s), v: s.v, color: color, dash: !!dash, raw: s };
    }
    function nonZeroSeries(name, label, color) {
      var s = series(name, label, color);
      return s && nonZero(s) ? s : null;
    }
    function add(spec) {
      spec.series = spec.series.filter(function (s) { return s; });
      var solid = spec.series.filter(function (s) { return !s.dash; });
      if (!solid.length) return null;
      if (spec.skipZero && !solid.some(function (s) { return nonZero(s); })) return null;
      count++;
      return tl.addChart(spec);
    }
    // the sampled threads' line needs SAMPLES: drawn right after the first frame
    var sampled = P.sampleCount > 0 && hasOnCpu(P) ? { label: "sampled threads", t: new Float64Array(0), v: new Float64Array(0), color: "#e8743b" } : null;
    cpuChart = add({
      title: "CPU",
      series: [
        series("cpu_pct", "process", "#3b82f6"),
        sampled,
        nonZeroSeries("cpu_throttled_pct", "throttled", "#ef4444"),
      ],
      format: fmtUnit("%"),
      min: 100,
    });
    add({
      title: "Memory",
      series: [
        series("rss_bytes", "rss", "#10b981"),
        nonZeroSeries("children_rss_bytes", "children", "#f59e0b"),
        // the cgroup's usage includes page cache: it says something only
        // beside its limit, and without one it flattens the RSS line
        memoryLimit(P, P.meta) > 0 ? series("cgroup_mem_bytes", objectOr(P.meta.limits).cgroup_scope === "container" ? "container cgroup" : "cgroup", "#a855f7") : null,
        series("cgroup_mem_limit_bytes", "limit", "#ef4444", true),
      ],
      format: fmtBytes,
    });
    add({ title: "Disk", series: [series("disk_read_Bps", "read", "#0ea5e9"), series("disk_write_Bps", "write", "#f59e0b")], format: fmtUnit("B/s"), skipZero: true });
    // the process's own TCP traffic when known; the namespace's apart, named so
    var nsOnly = objectOr(P.meta.network).net_scope === "namespace";
    add({ title: "Network", series: [series("sock_recv_Bps", "recv", "#14b8a6"), series("sock_sent_Bps", "sent", "#ec4899")].concat(
      nsOnly ? [] : [series("net_recv_Bps", "recv", "#14b8a6"), series("net_sent_Bps", "sent", "#ec4899")]), format: fmtUnit("B/s"), skipZero: true });
    if (nsOnly) add({ title: "Net (namespace)", series: [series("net_recv_Bps", "recv", "#5eead4"), series("net_sent_Bps", "sent", "#f9a8d4")], format: fmtUnit("B/s"), skipZero: true });
    var gpuUtil = [], gpuMem = [], k = 0;
    P.series.forEach(function (s) {
      var m = /^gpu(\d+)_util_pct$/.exec(s.name);
      if (m) gpuUtil.push(series(s.name, "gpu" + m[1], PALETTE[k++ % PALETTE.length]));
      m = /^gpu(\d+)_mem_bytes$/.exec(s.name);
      if (m) {
        var c = PALETTE[k++ % PALETTE.length];
        gpuMem.push(series(s.name, "gpu" + m[1], c));
        gpuMem.push(series("gpu" + m[1] + "_mem_total_bytes", "gpu" + m[1] + " total", c, true));
      }
    });
    if (gpuUtil.length) add({ title: "GPU", series: gpuUtil, format: fmtUnit("%"), min: 100 });
    if (gpuMem.length) add({ title: "GPU memory", series: gpuMem, format: fmtBytes });
    add({ title: "Threads", series: [series("threads", "threads", "#64748b")], format: function (v) { return fmtNum(v, 0); }, skipZero: true });
    if (!count) return null;

    var activityKey = null, lastRange = null; // the Timeline starts with no range
    // The selected function's time on the stack, drawn on the CPU chart.
    function activity(state) {
      if (!cpuChart || !P.sampleCount) return;
      var f = state.selFunc, mask = ctx.threadMask(state);
      var key = f + ":" + state.thread + ":" + state.process + ":" + state.cpuOnly;
      if (key === activityKey) return; // a range change leaves it as it is
      activityKey = key;
      if (f < 0) {
        tl.setExtra(cpuChart, null);
        return;
      }
      var a = functionActivity(ctx.M, f, { mask: mask, cpuOnly: state.cpuOnly }, duration, activityBuckets(duration, intervalUs(ctx)));
      var name = ctx.info.name(f) || "<unknown>";
      if (name.length > 40) name = name.slice(0, 39) + "\u2026";
      tl.setExtra(cpuChart, { label: name, t: a.t, v: a.v, color: "#d946ef" });
    }
    return {
      el: host,
      start: function () { tl.render(); },
      afterPaint: function (state) {
        if (sampled && cpuChart) {
          var act = activitySeries(P, duration, intervalUs(ctx));
          if (act) {
            sampled.t = act.t;
            sampled.v = act.v;
          } else {
            cpuChart.spec.series = cpuChart.spec.series.filter(function (x) { return x !== sampled; });
          }
          tl.refreshChart(cpuChart);
        }
        activity(state);
      },
      redraw: function () { tl.render(); },
      render: function (state) {
        if (state.range !== lastRange) {
          lastRange = state.range;
          tl.setRange(state.range ? state.range[0] : null, state.range ? state.range[1] : null, true);
        }
        activity(state);
      },
    };
  },
});
