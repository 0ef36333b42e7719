// panels/table.js — top functions of the current selection, or of memory
// at the heap peak.
//
// Sorted by on-CPU self time when the profile knows who was on CPU: wall
// time counts every idle thread (a heartbeat that sleeps through the step
// tops a wall-clock table, a thread pool's waits lead it), while on-CPU
// self time is where the step spent its CPU. Functions that mostly wait
// (under 10 % of their self time on CPU) stay listed with their wall time
// but greyed and marked "waiting"; the Self column sorts by wall time.

import { registerPanel } from "../registry.js";
import { guard, pct, fmtUs, fmtBytes, fmtCount } from "../util.js";
import { el, seg } from "../dom.js";
import { functionTotals } from "../model.js";
import { hasOnCpu } from "../summary.js";
import { beforeByFunc, comparisonOf } from "../compare.js";

var TABLE_ROWS = 300;
var IDLE_SHARE = 0.1;

function barCell(value, root, cls) {
  var td = el("td", "num bar-cell");
  var bar = el("span", cls, "");
  bar.style.width = Math.min(100, (value / root) * 100).toFixed(1) + "%";
  td.appendChild(bar);
  td.appendChild(el("span", "bar-text", pct(value / root)));
  return td;
}

registerPanel({
  id: "table",
  slot: "tab",
  tab: "Top functions",
  order: 30,
  create: function (ctx) {
    var M = ctx.M, info = ctx.info, P = ctx.P;
    var hasMem = P.memStack.length > 0, onCpu = hasOnCpu(P);
    var sort = { key: onCpu ? "cpu" : "self", desc: true };
    var panel = el("section", "panel table-panel");
    panel.id = "mfp-panel-table";
    var bar = el("div", "flame-bar");
    var infoLine = el("div", "table-info");
    bar.appendChild(infoLine);
    if (hasMem) {
      var src = seg([["cpu", "Time"], ["mem", "Memory at peak"]], "cpu", function (v) { ctx.set({ tableSource: v }); });
      src.id = "mfp-table-source";
      bar.appendChild(src);
    }
    panel.appendChild(bar);
    var wrap = el("div", "table-wrap");
    var table = el("table", "fn-table");
    table.id = "mfp-table";
    var thead = el("thead"), tr = el("tr");
    var cols = [["name", "Function"], ["loc", "Location"], ["self", "Self"], ["selfp", "Self %"], ["cpu", "On CPU"], ["total", "Total"], ["totalp", "Total %"], ["count", M.calls ? "Calls" : "Samples"]];
    // with a baseline (issue 15): its total beside this run's, and the change
    if (P.baseline) cols.splice(7, 0, ["before", "Baseline"], ["delta", "\u0394 total"]);
    var th = {};
    cols.forEach(function (c) {
      var cell = el("th", c[0] === "name" || c[0] === "loc" ? "" : "num");
      var b = el("button", "th-btn", c[1]);
      b.type = "button";
      b.dataset.key = c[0];
      if (c[0] === "cpu") b.title = "self time on CPU (the thread was running, not waiting)";
      if (c[0] === "before") b.title = "total time in the baseline run (whole run, every thread)";
      b.addEventListener("click", guard(function () {
        var key = c[0] === "selfp" ? "self" : c[0] === "totalp" ? "total" : c[0];
        if (sort.key === key) sort.desc = !sort.desc;
        else sort = { key: key, desc: key !== "name" && key !== "loc" };
        draw(ctx.get(), true);
      }));
      cell.appendChild(b);
      th[c[0]] = cell;
      tr.appendChild(cell);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
    var tbody = el("tbody");
    table.appendChild(tbody);
    wrap.appendChild(table);
    panel.appendChild(wrap);
    tbody.addEventListener("click", guard(function (e) {
      var row = e.target.closest("tr");
      if (!row || ctx.get().tableSource === "mem") return;
      ctx.set({ selFunc: parseInt(row.dataset.func, 10), tab: "sandwich" });
    }));
    var last = {};

    function draw(state, force) {
      var mem = state.tableSource === "mem" && hasMem;
      var tree = mem ? ctx.memTree(state) : ctx.cpuTree(state);
      // on-CPU self time beside the wall one (the same tree when On CPU is picked)
      var cpuTree = mem || !onCpu ? null : state.cpuOnly ? tree : ctx.cpuTreeOnCpu(state);
      if (!force && tree === last.tree && cpuTree === last.cpuTree && state.match === last.match && state.selFunc === last.selFunc) return;
      last = { tree: tree, cpuTree: cpuTree, match: state.match, selFunc: state.selFunc };
      var fmt = mem ? fmtBytes : fmtUs;
      var ft = functionTotals(tree), fc = cpuTree ? functionTotals(cpuTree) : null;
      // the baseline is a whole run of every thread: compared only with the same
      var cmp = !mem && !state.range && state.thread < 0 && (state.process < 0 || P.processes.length === 1) ? comparisonOf(M, state.cpuOnly) : null;
      var beforeF = cmp ? beforeByFunc(cmp, P) : null, deltaF = null;
      if (beforeF) {
        deltaF = new Float64Array(ft.total.length);
        for (var g = 0; g < deltaF.length; g++) deltaF[g] = ft.total[g] - beforeF[g];
      }
      var root = tree.total[0] || 1;
      var rows = [];
      for (var f = 0; f < ft.self.length; f++) {
        if (ft.total[f] <= 0) continue;
        if (state.match && !state.match[f]) continue;
        rows.push(f);
      }
      var key = (sort.key === "cpu" && !fc) || ((sort.key === "before" || sort.key === "delta") && !cmp) ? "self" : sort.key, sign = sort.desc ? -1 : 1, order;
      if (key === "name") order = function (a, b) { return sign * info.name(a).localeCompare(info.name(b)) || ft.total[b] - ft.total[a]; };
      else if (key === "loc") order = function (a, b) { return sign * info.location(a).localeCompare(info.location(b)) || ft.total[b] - ft.total[a]; };
      else if (key === "delta") order = function (a, b) { return sign * (Math.abs(deltaF[a]) - Math.abs(deltaF[b])) || ft.total[b] - ft.total[a]; };
      else {
        var col = key === "self" ? ft.self : key === "cpu" ? fc.self : key === "before" ? beforeF : key === "count" && ft.count ? ft.count : ft.total;
        order = function (a, b) { return sign * (col[a] - col[b]) || ft.total[b] - ft.total[a]; };
      }
      rows.sort(order);
      Object.keys(th).forEach(function (k) {
        var kk = k === "selfp" ? "self" : k === "totalp" ? "total" : k;
        th[k].setAttribute("aria-sort", kk === key && k !== "selfp" && k !== "totalp" ? (sort.desc ? "descending" : "ascending") : "none");
      });
      th.cpu.hidden = !fc;
      if (th.before) th.before.hidden = th.delta.hidden = !cmp;
      tbody.textContent = "";
      var frag = document.createDocumentFragment();
      rows.slice(0, TABLE_ROWS).forEach(function (f) {
        var row = el("tr");
        row.dataset.func = String(f);
        var idle = fc && ft.self[f] > 0 && fc.self[f] < IDLE_SHARE * ft.self[f];
        row.className = (f === state.selFunc ? "selected" : "") + (idle ? " idle" : "");
        var name = el("td", "fn-name", info.name(f) || "<unknown>");
        if (idle) name.appendChild(el("span", "idle-tag", "waiting"));
        row.appendChild(name);
        row.appendChild(el("td", "fn-loc", info.location(f, true)));
        row.appendChild(el("td", "num", fmt(ft.self[f])));
        row.appendChild(barCell(ft.self[f], root, "bar"));
        var cpuCell = el("td", "num", fc ? fmtUs(fc.self[f]) : "");
        cpuCell.hidden = !fc;
        row.appendChild(cpuCell);
        row.appendChild(el("td", "num", fmt(ft.total[f])));
        row.appendChild(barCell(ft.total[f], root, "bar total"));
        if (th.before) {
          var bc = el("td", "num", cmp ? fmtUs(beforeF[f]) : ""), d = cmp ? deltaF[f] : 0;
          var dc = el("td", "num" + (d > 0 ? " delta-up" : d < 0 ? " delta-down" : ""), cmp ? (d >= 0 ? "+" : "\u2212") + fmtUs(Math.abs(d)) : "");
          bc.hidden = dc.hidden = !cmp;
          row.appendChild(bc);
          row.appendChild(dc);
        }
        row.appendChild(el("td", "num", ft.count ? fmtCount(ft.count[f]) : ""));
        row.title = info.label(f) + (idle ? " — mostly waiting: " + pct(1 - fc.self[f] / ft.self[f]) + " of its self time off CPU" : "") + (mem ? "" : " — click for callers, callees and lines");
        frag.appendChild(row);
      });
      tbody.appendChild(frag);
      var shown = Math.min(rows.length, TABLE_ROWS);
      infoLine.textContent = rows.length + " functions" + (state.match ? " matching the search" : "") + (shown < rows.length ? ", top " + shown + " shown" : "") +
        (mem ? " · bytes live at the heap peak" : (key === "cpu" ? " · by self time on CPU; waiting functions greyed" : "") + " · click a row for its callers, callees and lines");
    }

    return { el: panel, render: function (state) { draw(state, false); } };
  },
});
