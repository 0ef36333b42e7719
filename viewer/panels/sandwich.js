// panels/sandwich.js — the selected function: its hot lines, who called
// it and what it called, over the current selection.

import { registerPanel } from "../registry.js";
import { pct, fmtUs } from "../util.js";
import { el, copyButton } from "../dom.js";
import { FlameGraph } from "../flame.js";
import { functionTotals, calleesTree, callersTree, lineTotals } from "../model.js";
import { comparisonOf, fmtChange } from "../compare.js";

var LINE_ROWS = 12;

function part(title, hint) {
  var box = el("div", "sw-part");
  box.appendChild(el("h3", "", title));
  box.appendChild(el("div", "hint", hint));
  var host = el("div", "flame-host");
  box.appendChild(host);
  return { box: box, host: host };
}

registerPanel({
  id: "sandwich",
  slot: "tab",
  tab: "Sandwich",
  order: 40,
  create: function (ctx) {
    var info = ctx.info;
    var panel = el("section", "panel sandwich-panel");
    panel.id = "mfp-panel-sandwich";
    var head = el("div", "sw-head");
    var title = el("div", "sw-title");
    head.appendChild(title);
    panel.appendChild(head);
    var empty = el("div", "flame-empty", "Pick a function: click a box in the flame graph and press “Sandwich”, or click a row of Top functions.");
    panel.appendChild(empty);
    var body = el("div", "sw-body");
    var lines = el("div", "sw-part sw-lines");
    lines.id = "mfp-lines";
    body.appendChild(lines);
    var c1 = part("Callers", "the function on top, who called it below");
    var c2 = part("Callees", "the function on top, what it called below");
    body.appendChild(c1.box);
    body.appendChild(c2.box);
    panel.appendChild(body);
    var jump = function (fg) {
      return function (node) {
        var f = fg.tree.func[node];
        if (node > 0 && f >= 0) ctx.set({ selFunc: f });
      };
    };
    var callers = new FlameGraph(c1.host, info, { format: fmtUs, ariaLabel: "callers", onSelect: function (n) { jump(callers)(n); } });
    var callees = new FlameGraph(c2.host, info, { format: fmtUs, ariaLabel: "callees", onSelect: function (n) { jump(callees)(n); } });
    var last = {};

    // Where in the function the time went, line by line (FRAMES' lines).
    function drawLines(f, state) {
      lines.textContent = "";
      var lt = lineTotals(ctx.M, f, ctx.filters(state));
      var known = lt.rows.filter(function (r) { return r.line > 0; });
      lines.appendChild(el("h3", "", "Lines"));
      if (!known.length) {
        lines.appendChild(el("div", "hint", "no line numbers recorded for this function"));
        return;
      }
      lines.appendChild(el("div", "hint", "where in " + (info.name(f) || "it") + " the time went: self = the line itself ran, total = with what it called from there"));
      var table = el("table", "fn-table lines-table");
      var hr = el("tr");
      ["Line", "Self", "Total", "Share"].forEach(function (h, i) { hr.appendChild(el("th", i ? "num" : "", h)); });
      var thead = el("thead");
      thead.appendChild(hr);
      table.appendChild(thead);
      var tbody = el("tbody");
      var file = info.file(f);
      known.slice(0, LINE_ROWS).forEach(function (r) {
        var tr = el("tr");
        tr.dataset.line = String(r.line);
        tr.appendChild(el("td", "fn-loc", (file ? file.split(/[\\/]/).pop() : "line") + ":" + r.line));
        tr.appendChild(el("td", "num", fmtUs(r.self)));
        tr.appendChild(el("td", "num", fmtUs(r.total)));
        tr.appendChild(el("td", "num", pct(r.total / lt.total)));
        tbody.appendChild(tr);
      });
      table.appendChild(tbody);
      lines.appendChild(table);
      if (known.length > LINE_ROWS) lines.appendChild(el("div", "hint", (known.length - LINE_ROWS) + " more lines with less time"));
    }

    ctx.hooks.sandwichNames = function () {
      var names = function (fg) {
        if (!fg || !fg.rects) return [];
        return fg.rects.n.map(function (n) { var f = fg.tree.func[n]; return f < 0 ? "" : info.name(f); });
      };
      return { callers: names(callers), callees: names(callees) };
    };

    return {
      el: panel,
      render: function (state) {
        var f = state.selFunc;
        var tree = f >= 0 ? ctx.cpuTree(state) : null;
        if (f === last.f && tree === last.tree) {
          if (state.match !== last.match) {
            last.match = state.match;
            callers.setMatch(state.match);
            callees.setMatch(state.match);
          }
          return;
        }
        last = { f: f, tree: tree, match: state.match };
        title.textContent = "";
        empty.hidden = f >= 0;
        body.hidden = f < 0;
        if (f < 0) return;
        var ft = functionTotals(tree), root = tree.total[0] || 1;
        title.appendChild(el("span", "det-name", info.name(f) || "<unknown>"));
        title.appendChild(el("span", "det-loc", info.location(f)));
        title.appendChild(el("span", "det-nums", "self " + fmtUs(ft.self[f]) + " (" + pct(ft.self[f] / root) + ") · total " + fmtUs(ft.total[f]) + " (" + pct(ft.total[f] / root) + ")"));
        var cmp = !state.range && state.thread < 0 ? comparisonOf(ctx.M, state.cpuOnly) : null;
        var row = cmp ? cmp.rows.find(function (r) { return r.key === cmp.keysA[f]; }) : null;
        if (row) {
          // the baseline's whole run beside this run's (issue 15)
          var was = el("span", "det-nums", "baseline total " + fmtUs(row.before) + " (" + pct(row.beforeShare) + ") \u2192 " + fmtUs(row.after) + " (" + pct(row.afterShare) + ") · " + fmtChange(row.before, row.after));
          was.id = "mfp-sandwich-baseline";
          title.appendChild(was);
        }
        title.appendChild(copyButton(function () { return info.name(f); }));
        drawLines(f, state);
        callers.setTree(callersTree(tree, f));
        callees.setTree(calleesTree(tree, f));
        callers.setMatch(state.match);
        callees.setMatch(state.match);
      },
    };
  },
});
