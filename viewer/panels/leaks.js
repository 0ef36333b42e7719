// panels/leaks.js — what the step allocated and was still live when it
// ended, by allocating stack (LEAKS): the question after "what was live at
// the peak".

import { registerPanel } from "../registry.js";
import { fmtBytes } from "../util.js";
import { makeFlamePanel } from "../flamepanel.js";
import { leaksTree } from "../heaptime.js";

registerPanel({
  id: "leaks",
  slot: "tab",
  tab: "Live at end",
  order: 57,
  available: function (ctx) { return ctx.P.leakStack.length > 0; },
  create: function (ctx) {
    var view = makeFlamePanel(ctx, { id: "mfp-panel-leaks", format: fmtBytes, rootLabel: "live at the end", aria: "memory live at the end flame graph" });
    var fg = view.flame, last = {};
    var tree = leaksTree(ctx.M);
    ctx.hooks.leaksTotal = function () { return tree.total[0]; };
    return {
      el: view.panel,
      zoomable: fg,
      redraw: function () { fg.draw(); },
      render: function (state) {
        if (!last.shown) {
          fg.setTree(tree, false);
          last.shown = true;
          view.refresh();
        }
        if (state.match !== last.match) {
          last.match = state.match;
          fg.setMatch(state.match);
        }
      },
    };
  },
});
