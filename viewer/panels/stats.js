// panels/stats.js — the grid of headline figures (summary.js decides which).

import { registerPanel } from "../registry.js";
import { el } from "../dom.js";
import { statCards } from "../summary.js";

registerPanel({
  id: "stats",
  slot: "head",
  order: 10,
  create: function (ctx) {
    var grid = el("section", "stats");
    grid.id = "mfp-stats";
    statCards(ctx.P, ctx.meta, ctx.duration).forEach(function (c) {
      var box = el("div", c.alert ? "stat alert" : "stat");
      box.dataset.stat = c.key;
      box.appendChild(el("div", "stat-label", c.label));
      box.appendChild(el("div", "stat-value", c.value));
      if (c.sub) box.appendChild(el("div", "stat-sub", c.sub));
      grid.appendChild(box);
    });
    grid.hidden = !grid.children.length;
    return { el: grid };
  },
});
