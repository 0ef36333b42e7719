// panels/compare.js — this run against its baseline, in words, on top.
//
// "Compared with run 12 (date): 12.4 s → 18.9 s (+52 %)" and the functions
// where the time grew or shrank most, with before/after seconds and
// shares, as page text on first paint. The list names where a change
// starts (compare.js: a caller that only passes a callee's change on is
// left out) and leaves out changes too small to tell from sampling noise.
// Without a baseline but with META compare.missing the card says why in
// one line; without META compare the panel is absent.

import { registerPanel } from "../registry.js";
import { guard, pct } from "../util.js";
import { el } from "../dom.js";
import { comparisonOf, fmtChange, fmtDate, fmtSec } from "../compare.js";

var LISTED = 5;
// Changes under this share of the larger run, or two sampling intervals,
// are not named: a sampled profile moves that much between equal runs.
var NOISE_SHARE = 0.005;

function baselineName(info) {
  if (info.pathspec) return "run " + info.baseline;
  return String(info.baseline || "the baseline");
}

function changeItem(ctx, r, byKey) {
  var li = el("li", "compare-item");
  li.dataset.name = r.name;
  var f = byKey.get(r.key);
  var name = el(f === undefined ? "span" : "button", "compare-fn", r.name || "<unknown>");
  if (f !== undefined) {
    name.type = "button";
    name.title = ctx.info.label(f) + " — click for callers, callees and lines";
    name.addEventListener("click", guard(function () { ctx.set({ selFunc: f, tab: ctx.hasTab("sandwich") ? "sandwich" : ctx.get().tab }); }));
  }
  li.appendChild(name);
  var d = r.after - r.before;
  li.appendChild(el("span", "compare-nums",
    fmtSec(r.before) + " \u2192 " + fmtSec(r.after) + " (" + (d >= 0 ? "+" : "\u2212") + fmtSec(Math.abs(d)) + ")" +
    " · " + pct(r.beforeShare) + " \u2192 " + pct(r.afterShare) + " of the time"));
  return li;
}

registerPanel({
  id: "compare",
  slot: "head",
  order: 15,
  create: function (ctx) {
    var P = ctx.P, info = ctx.meta.compare;
    if (!info || typeof info !== "object") return null;
    var box = el("section", "compare");
    box.id = "mfp-compare";
    box.setAttribute("aria-label", "Comparison with an earlier run");
    var t0 = performance.now();
    var cmp = comparisonOf(ctx.M, false);
    ctx.timings.compare = performance.now() - t0;
    if (!cmp) {
      box.classList.add("compare-none");
      var why = P.baselineError ? "the baseline in this card could not be read (" + P.baselineError + ")" : String(info.missing || "no baseline in this card");
      box.appendChild(el("div", "compare-head", "No comparison: " + why));
      return { el: box };
    }
    var B = P.baseline, date = fmtDate(B.meta.start_unix_ns);
    var head = el("div", "compare-head",
      "Compared with " + baselineName(info) + (date ? " (" + date + ")" : "") + ": " +
      fmtSec(cmp.before_us) + " \u2192 " + fmtSec(cmp.after_us) + " (" + fmtChange(cmp.before_us, cmp.after_us) + ")");
    head.id = "mfp-compare-head";
    if (info.pathspec) head.title = "baseline task " + info.pathspec + (info.how === "chosen" ? " (named by compare=)" : " (the closest earlier successful run)");
    box.appendChild(head);

    var byKey = new Map();
    for (var f = P.funcName.length - 1; f >= 0; f--) byKey.set(cmp.keysA[f], f);
    var floor = Math.max(NOISE_SHARE * Math.max(cmp.whole_before, cmp.whole_after), 2 * (ctx.meta.interval_ns || 0) / 1000);
    var big = cmp.changes.filter(function (r) { return Math.abs(r.delta) >= floor; });
    var lists = el("div", "compare-lists");
    [["grew", "Grew most", function (r) { return r.delta > 0; }], ["shrank", "Shrank most", function (r) { return r.delta < 0; }]].forEach(function (g) {
      var rows = big.filter(g[2]).slice(0, LISTED);
      if (!rows.length) return;
      var col = el("div", "compare-list");
      col.id = "mfp-compare-" + g[0];
      col.appendChild(el("div", "compare-title", g[1]));
      var ol = el("ol");
      rows.forEach(function (r) { ol.appendChild(changeItem(ctx, r, byKey)); });
      col.appendChild(ol);
      lists.appendChild(col);
    });
    if (!lists.children.length) lists.appendChild(el("div", "compare-same", "No function's time changed by more than sampling noise."));
    box.appendChild(lists);
    box.appendChild(el("div", "compare-note",
      "Whole runs, every thread; functions matched by name and file. The Diff tab colours this run's flame graph by change; Top functions shows the baseline beside each."));
    ctx.hooks.compareChanges = function () {
      return big.map(function (r) { return { name: r.name, before: r.before, after: r.after, delta: r.delta }; });
    };
    return { el: box };
  },
});
