// panels/memtime.js — memory over time (HEAP_EVENTS): the live heap of the
// top allocating functions beside RSS on the shared time axis, and a flame
// graph of what was allocated in the selected range and still live at its
// end (the whole run when nothing is selected) — memray's --temporal view.

import { registerPanel } from "../registry.js";
import { fmtBytes, fmtUs } from "../util.js";
import { el } from "../dom.js";
import { Timeline } from "../timeline.js";
import { makeFlamePanel } from "../flamepanel.js";
import { seriesByName } from "../summary.js";
import { liveAtEndOf, heapSeries } from "../heaptime.js";

var COLORS = ["#e8743b", "#3b82f6", "#a855f7", "#eab308", "#ec4899"];

registerPanel({
  id: "memtime",
  slot: "tab",
  tab: "Memory over time",
  order: 55,
  available: function (ctx) { return ctx.P.heapStack.length > 0; },
  create: function (ctx) {
    var P = ctx.P, duration = ctx.duration;
    var hs = heapSeries(P, duration, COLORS.length, 400);
    var chartHost = el("div", "memtime-chart");
    chartHost.id = "mfp-memtime-chart";
    var tl = new Timeline(chartHost, duration, { onRange: function (r) { ctx.set({ range: r && r[1] > r[0] ? r : null }); } });
    var series = [{ label: "sampled heap", t: hs.t, v: hs.total, color: "#10b981" }];
    hs.funcs.forEach(function (s, k) {
      series.push({ label: ctx.info.name(s.func) || "<unknown>", t: hs.t, v: s.v, color: COLORS[k] });
    });
    var rss = seriesByName(P, "rss_bytes");
    if (rss && rss.v.length) {
      var t = new Float64Array(rss.t.length);
      for (var i = 0; i < t.length; i++) t[i] = rss.t[i] * 1000;
      series.push({ label: "rss", t: t, v: rss.v, color: "#64748b", dash: true });
    }
    tl.addChart({ title: "Heap by top allocating functions", series: series, format: fmtBytes });
    var caption = el("p", "hint");
    caption.id = "mfp-memtime-caption";
    var view = makeFlamePanel(ctx, {
      id: "mfp-panel-memtime",
      format: fmtBytes,
      rootLabel: "still live",
      aria: "memory allocated in the range and live at its end",
      emptyText: "nothing allocated in this range was still live at its end",
    });
    view.panel.insertBefore(caption, view.panel.firstChild);
    view.panel.insertBefore(chartHost, view.panel.firstChild);
    var minLife = (P.meta.memory || {}).events_min_life_us;
    var fg = view.flame, last = {};
    ctx.hooks.memtimeTotal = function () { return liveAtEndOf(ctx.M, ctx.get().range).total[0]; };
    ctx.hooks.memtimeSeries = function () {
      return series.map(function (s) { return { label: s.label, max: Math.max.apply(null, Array.from(s.v)) }; });
    };
    return {
      el: view.panel,
      zoomable: fg,
      start: function () { tl.render(); },
      redraw: function () { fg.draw(); tl.render(); },
      render: function (state) {
        if (state.range !== last.range || !last.tree) {
          last.range = state.range;
          var tree = liveAtEndOf(ctx.M, state.range);
          last.tree = tree;
          fg.setTree(tree, last.shown);
          last.shown = true;
          view.refresh();
          tl.setRange(state.range ? state.range[0] : null, state.range ? state.range[1] : null, true);
          tl.render();
          caption.textContent = (state.range
            ? "Allocated between " + fmtUs(state.range[0]) + " and " + fmtUs(state.range[1]) + " and still live at " + fmtUs(state.range[1])
            : "Allocated while profiling and still live at the end (drag across a chart to choose a range)") +
            ": " + fmtBytes(tree.total[0]) + " (sampled estimate)" +
            (minLife > 0 ? "; allocations freed within " + fmtUs(minLife) + " are not in this view" : "");
        }
        if (state.match !== last.match) {
          last.match = state.match;
          fg.setMatch(state.match);
        }
      },
    };
  },
});
