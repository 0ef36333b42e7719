// panels/diff.js — the differential flame graph: this run's whole-run CPU
// tree (widths from this run), each frame coloured by how its inclusive
// time at the same path changed from the baseline (compare.js diffColor):
// red grew, blue shrank, grey about the same. A path the baseline never
// took is new, full red. Time removed entirely has no box here; the list
// on top names it. Whole runs and every thread: the baseline has no time
// order and other threads; On CPU compares on-CPU time on both sides.

import { registerPanel } from "../registry.js";
import { fmtUs } from "../util.js";
import { el } from "../dom.js";
import { makeFlamePanel } from "../flamepanel.js";
import { aggregateCpu } from "../model.js";
import { baselineAtNodes, comparisonOf, diffColor, fmtChange } from "../compare.js";

registerPanel({
  id: "diff",
  slot: "tab",
  tab: "Diff flame graph",
  order: 15,
  available: function (ctx) { return !!ctx.P.baseline; },
  create: function (ctx) {
    var P = ctx.P, M = ctx.M;
    var before = null, lastCpu = null;
    var legend = el("div", "diff-legend");
    legend.id = "mfp-diff-legend";
    [["grew", "grew"], ["same", "about the same (within 10 %)"], ["shrank", "shrank"]].forEach(function (l) {
      var item = el("span", "diff-key");
      item.appendChild(el("span", "diff-swatch diff-" + l[0], ""));
      item.appendChild(el("span", "", l[1]));
      legend.appendChild(item);
    });
    var view = makeFlamePanel(ctx, {
      id: "mfp-panel-diff",
      format: fmtUs,
      rootLabel: "all",
      aria: "differential flame graph",
      emptyText: "No samples in this run.",
      extra: legend,
      nodeColor: function (node, dark) {
        return before ? diffColor(before[node], fg.tree.total[node], dark) : null;
      },
      details: function (fg, node, box) {
        var b = before[node], a = fg.tree.total[node];
        var line = el("div", "det-lines");
        line.id = "mfp-diff-detail";
        line.appendChild(el("span", "", "baseline " + fmtUs(b) + " \u2192 this run " + fmtUs(a) + " (" + fmtChange(b, a) + ")"));
        box.appendChild(line);
      },
    });
    var fg = view.flame;
    view.panel.insertBefore(el("div", "flame-note", "This run's frames, coloured by the change from the baseline at the same call path (whole runs, every thread)."), view.panel.children[1]);

    ctx.hooks.diffBoxes = function () {
      if (!fg.rects || !before) return [];
      var R = fg.rects, out = [];
      for (var i = 0; i < R.n.length; i++) {
        var n = R.n[i], f = fg.tree.func[n];
        out.push({ name: f < 0 ? "" : ctx.info.name(f), before: before[n], after: fg.tree.total[n],
          color: diffColor(before[n], fg.tree.total[n], false), x: R.x[i], w: R.w[i], depth: R.d[i] });
      }
      return out;
    };

    return {
      el: view.panel,
      render: function (state) {
        if (state.cpuOnly === lastCpu) return;
        lastCpu = state.cpuOnly;
        var tree = aggregateCpu(M, { mask: null, cpuOnly: state.cpuOnly, range: null });
        before = baselineAtNodes(M, comparisonOf(M, state.cpuOnly));
        var first = !fg.tree;
        fg.setTree(tree, true, null);
        // opens on the step function, as the CPU flame graph does
        if (first && ctx.focus() > 0) fg.setZoom(ctx.focus());
        view.refresh();
      },
      redraw: function () { fg.draw(); },
      zoomable: fg,
    };
  },
});
