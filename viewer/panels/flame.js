// panels/flame.js — the CPU flame graph of the current selection.
//
// It opens on the step function (META "focus") and, beside it at the same
// depth, on everything that did not run under it: other threads' work is in
// the first view, never hidden behind a zoom, and a line above the graph
// says what is beside the step and what is left out (frames above the step
// on its own thread, one "Reset zoom" away).

import { registerPanel } from "../registry.js";
import { guard, pct, fmtUs, fmtCount } from "../util.js";
import { el } from "../dom.js";
import { makeFlamePanel } from "../flamepanel.js";
import { lineTotals, timeOutside } from "../model.js";
import { threadLabel } from "../summary.js";

// The top-level nodes not on the path to `node`: other threads' roots.
function besideOf(tree, node) {
  var top = node;
  while (top > 0 && tree.parent[top] > 0) top = tree.parent[top];
  return tree.kids[0].filter(function (k) { return k !== top && tree.total[k] > 0; })
    .sort(function (a, b) { return tree.total[b] - tree.total[a]; });
}

// Why the graph is empty, in words: a step shorter than the interval, a
// sampler that took nothing, or a filter that leaves nothing.
function emptyReason(ctx, state) {
  var P = ctx.P, meta = ctx.meta, calls = ctx.M.calls;
  var recorded = P.totCount.length > 0;
  if (!recorded) {
    if (calls) return "No calls recorded in this profile.";
    var iv = (meta.interval_ns || 0) / 1000, ran = ctx.duration > 0 ? "the step ran " + fmtUs(ctx.duration) : "";
    if (meta.samples_dropped > 0) return "No samples: all " + fmtCount(meta.samples_dropped) + " samples the sampler took were dropped (see About this profile).";
    if (iv > 0 && ctx.duration > 0 && ctx.duration < 10 * iv) {
      return "No samples: " + ran + " and the sampler looks once every " + fmtUs(iv) + ", so it ended before a sample was recorded. Profile a longer step or use a shorter interval.";
    }
    return "No samples in this profile" + (ran ? " (" + ran + ")" : "") + ".";
  }
  var why = [];
  if (state.thread >= 0) why.push("of " + threadLabel(P, state.thread));
  if (state.cpuOnly) why.push("on CPU");
  if (state.range) why.push("in " + fmtUs(state.range[0]) + " – " + fmtUs(state.range[1]));
  var what = calls ? "No calls " : "No samples ";
  return what + (why.length ? why.join(" ") : "in this view") + "." + (state.cpuOnly ? " The selection never ran on a CPU while sampled: Wall clock shows where it waited." : "");
}

registerPanel({
  id: "flame",
  slot: "tab",
  tab: "CPU flame graph",
  order: 10,
  create: function (ctx) {
    var M = ctx.M, info = ctx.info;
    var stepView = false, lastTree = null, lastMatch = null, focus = -1;
    var note = el("div", "flame-note");
    note.id = "mfp-beside-note";
    note.hidden = true;
    var view = makeFlamePanel(ctx, {
      id: "mfp-panel-flame",
      format: fmtUs,
      rootLabel: "all",
      aria: "CPU flame graph",
      emptyText: M.calls ? "No calls recorded in this view." : "No samples in this view.",
      onZoom: function (fg, node) {
        stepView = false;
        describe();
        ctx.set({ selFunc: node > 0 ? fg.tree.func[node] : -1 });
      },
      hint: function () {
        if (!(focus > 0 && fg.zoom === focus)) return null;
        var h = el("span", "hint crumb-hint", "opened on " + (info.name(fg.tree.func[focus]) || "the step") + " · Reset zoom shows the frames above");
        h.id = "mfp-focus-hint";
        return h;
      },
      details: function (fg, node, box) {
        var f = fg.tree.func[node];
        var lt = lineTotals(M, f, ctx.filters(ctx.get()));
        var shown = lt.rows.filter(function (r) { return r.line > 0; }).slice(0, 3);
        if (shown.length && lt.total > 0) {
          var lines = el("div", "det-lines");
          lines.id = "mfp-flame-lines";
          lines.appendChild(el("span", "", "hot lines"));
          shown.forEach(function (r) { lines.appendChild(el("span", "chip", ":" + r.line + " " + pct(r.total / lt.total))); });
          box.appendChild(lines);
        }
        if (ctx.hasTab("sandwich")) {
          var sw = el("button", "btn small", "Sandwich");
          sw.type = "button";
          sw.addEventListener("click", guard(function () { ctx.set({ selFunc: f, tab: "sandwich" }); }));
          box.appendChild(sw);
        }
      },
    });
    var fg = view.flame;
    view.panel.insertBefore(note, view.panel.children[1]);

    // What the step view shows beside the step and what it leaves out.
    // The note reads the records again (per thread): after the redraw, so a
    // range drag stays one pass over the samples.
    // Not before the first frame: a timer set then would run before it.
    var noteTimer = null, painted = false;
    function describe() {
      clearTimeout(noteTimer);
      if (!(stepView && fg.tree && focus > 0)) note.hidden = true;
      else if (painted) noteTimer = setTimeout(guard(describeNow), 0);
    }
    function describeNow() {
      note.textContent = "";
      note.hidden = !(stepView && fg.tree && focus > 0);
      if (note.hidden) return;
      var t = fg.tree, root = t.total[0] || 1, besideW = 0;
      fg.beside.forEach(function (n) { besideW += t.total[n]; });
      var left = root - t.total[fg.zoom] - besideW;
      var parts = [];
      if (fg.beside.length) {
        // name the threads that hold it, busiest first
        // (the step's own thread's time outside it is the part left out, below)
        var to = timeOutside(M, focus, ctx.filters(ctx.get())), out = to.outside, ths = [];
        for (var i = 0; i < out.length; i++) if (out[i] > root * 1e-3 && !(to.inside[i] > 0)) ths.push(i);
        ths.sort(function (a, b) { return out[b] - out[a]; });
        var names = ths.slice(0, 4).map(function (i) { return (ctx.P.strings[ctx.P.threadName[i]] || "thread") + " " + pct(out[i] / root); });
        if (ths.length > 4) names.push("and " + (ths.length - 4) + " more");
        parts.push("Beside the step function: " + pct(besideW / root) + " of the time ran outside it" + (names.length ? ", in " + names.join(", ") : ""));
      }
      if (left > root * 1e-4) parts.push(pct(left / root) + " in frames above the step on its thread is not shown (Reset zoom)");
      note.hidden = !parts.length;
      note.textContent = parts.join(" · ");
    }

    function openStepView(tree) {
      stepView = true;
      fg.zoom = focus;
      fg.beside = besideOf(tree, focus);
    }

    ctx.hooks.boxes = function () {
      if (!fg.rects) return [];
      var R = fg.rects, out = [];
      for (var i = 0; i < R.n.length; i++) {
        var f = fg.tree.func[R.n[i]];
        out.push({ name: f < 0 ? "" : info.name(f), x: R.x[i], w: R.w[i], depth: R.d[i], total: fg.tree.total[R.n[i]] });
      }
      return out;
    };
    // bench: one layout + draw of the graph as it is
    ctx.hooks.flameRender = function () {
      var t0 = performance.now();
      fg.render();
      return { total: performance.now() - t0, layout: fg.layoutMs, draw: fg.drawMs };
    };
    ctx.stateExtras.push(function (out) {
      out.zoom = fg.zoom;
      out.zoomName = fg.zoom > 0 && fg.tree ? info.name(fg.tree.func[fg.zoom]) : "";
      out.visibleBoxes = fg.rects ? fg.rects.n.length : 0;
      out.beside = fg.beside.map(function (n) { return info.name(fg.tree.func[n]); });
    });

    return {
      el: view.panel,
      flame: fg,
      start: function (state) {
        focus = ctx.focus();
        if (focus > 0) openStepView(ctx.cpuTree(state));
      },
      render: function (state) {
        var tree = ctx.cpuTree(state);
        if (tree !== lastTree) {
          lastTree = tree;
          fg.setEmptyText(emptyReason(ctx, state));
          fg.setTree(tree, true, stepView ? besideOf(tree, focus) : null);
          if (fg.zoom !== focus) stepView = false;
          view.refresh();
          describe();
          ctx.timings.layout = fg.layoutMs;
          ctx.timings.draw = fg.drawMs;
        }
        if (state.match !== lastMatch) {
          lastMatch = state.match;
          fg.setMatch(state.match);
        }
      },
      afterPaint: function () {
        painted = true;
        describe();
      },
      redraw: function () { fg.draw(); },
      zoomable: fg,
    };
  },
});
