// panels/memory.js — the heap at its peak (or everything allocated) as a
// flame graph over the allocating stacks (MEMORY section).

import { registerPanel } from "../registry.js";
import { fmtBytes } from "../util.js";
import { seg } from "../dom.js";
import { makeFlamePanel } from "../flamepanel.js";

registerPanel({
  id: "memory",
  slot: "tab",
  tab: "Memory at peak",
  order: 50,
  available: function (ctx) { return ctx.P.memStack.length > 0; },
  create: function (ctx) {
    var extra = seg([["live", "Live at peak"], ["alloc", "Allocated"]], ctx.get().memWhich, function (v) {
      ctx.set({ memWhich: v });
    });
    extra.id = "mfp-mem-mode";
    var view = makeFlamePanel(ctx, { id: "mfp-panel-memory", format: fmtBytes, rootLabel: "all memory", aria: "memory flame graph", extra: extra });
    var fg = view.flame, last = {};
    ctx.hooks.memoryTotal = function () { return ctx.memTree(ctx.get()).total[0]; };
    return {
      el: view.panel,
      zoomable: fg,
      redraw: function () { fg.draw(); },
      render: function (state) {
        var tree = ctx.memTree(state);
        if (tree !== last.tree) {
          last.tree = tree;
          fg.setTree(tree, last.shown);
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
