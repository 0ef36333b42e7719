// panels/tasks.js — the inputs of a merged profile (META merged, written by
// Profile.merge: the tasks of a foreach, say), one row each: duration, peak
// RSS, the function with the most self time. Longest first, and the slowest
// and the largest named in words, which is what a fan-out's card is asked.
// Absent unless the profile was merged.

import { registerPanel } from "../registry.js";
import { fmtBytes, fmtCount, fmtUs } from "../util.js";
import { el } from "../dom.js";

registerPanel({
  id: "tasks",
  slot: "head",
  order: 16,
  create: function (ctx) {
    var rows = ctx.meta.merged;
    if (!Array.isArray(rows) || !rows.length) return null;
    rows = rows.filter(function (r) { return r && typeof r === "object"; }).slice()
      .sort(function (a, b) { return (b.duration_ns || 0) - (a.duration_ns || 0); });
    var box = el("section", "compare tasks");
    box.id = "mfp-tasks";
    var slowest = rows[0], largest = null;
    rows.forEach(function (r) {
      if (typeof r.peak_rss_bytes === "number" && (!largest || r.peak_rss_bytes > largest.peak_rss_bytes)) largest = r;
    });
    var head = el("div", "compare-head", rows.length + " profiles merged · slowest: " + String(slowest.label) + " (" + fmtUs((slowest.duration_ns || 0) / 1000) + ")" +
      (largest ? " · largest: " + String(largest.label) + " (" + fmtBytes(largest.peak_rss_bytes) + " peak RSS)" : ""));
    head.id = "mfp-tasks-head";
    box.appendChild(head);
    var wrap = el("div", "table-wrap tasks-wrap");
    var table = el("table", "fn-table tasks-table");
    table.id = "mfp-tasks-table";
    var tr = el("tr");
    ["Task", "Duration", "Peak RSS", "Top function (self)", "Samples"].forEach(function (h, i) {
      tr.appendChild(el("th", i === 0 || i === 3 ? "" : "num", h));
    });
    var thead = el("thead");
    thead.appendChild(tr);
    table.appendChild(thead);
    var tbody = el("tbody");
    rows.forEach(function (r) {
      var row = el("tr", (r === slowest ? "slowest" : "") + (r === largest ? " largest" : "") + (r.step_failed ? " failed" : ""));
      row.dataset.label = String(r.label);
      row.appendChild(el("td", "fn-name", String(r.label) + (r.step_failed ? " (failed)" : "")));
      row.appendChild(el("td", "num", fmtUs((r.duration_ns || 0) / 1000)));
      row.appendChild(el("td", "num", typeof r.peak_rss_bytes === "number" ? fmtBytes(r.peak_rss_bytes) : "—"));
      var top = r.top && typeof r.top === "object" ? String(r.top.name || "") + " " + fmtUs((r.top.self_ns || 0) / 1000) : "—";
      row.appendChild(el("td", "", top));
      row.appendChild(el("td", "num", fmtCount(r.samples || 0)));
      tbody.appendChild(row);
    });
    table.appendChild(tbody);
    wrap.appendChild(table);
    box.appendChild(wrap);
    return { el: box };
  },
});
