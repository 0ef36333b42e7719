// panels/stack.js — one thread's stacks in time order. Follows the range
// and the thread selection (the main thread when every thread is picked);
// opens from the step function like the flame graph.

import { registerPanel } from "../registry.js";
import { fmtUs } from "../util.js";
import { el, seg } from "../dom.js";
import { StackChart } from "../stackchart.js";
import { threadLabel, mainThread } from "../summary.js";

registerPanel({
  id: "stack",
  slot: "tab",
  tab: "Stack chart",
  order: 20,
  available: function (ctx) { return ctx.P.sampleCount > 0; },
  create: function (ctx) {
    var P = ctx.P, M = ctx.M;
    var panel = el("section", "panel stack-panel");
    panel.id = "mfp-panel-stack";
    var head = el("div", "flame-bar");
    var title = el("div", "stack-title");
    head.appendChild(title);
    var fromStep = true;
    var toggle = seg([["focus", "From the step"], ["all", "Whole stack"]], "focus", function (v) {
      fromStep = v === "focus";
      draw(ctx.get());
    });
    toggle.id = "mfp-stack-focus";
    toggle.hidden = true;
    head.appendChild(toggle);
    panel.appendChild(head);
    var host = el("div", "flame-host");
    panel.appendChild(host);
    var chart = new StackChart(host, ctx.info, {
      onSelect: function (f) { ctx.set({ selFunc: f }); },
      onRange: function (r) { ctx.set({ range: r && r[1] > r[0] ? r : null }); },
    });
    var last = {};

    function draw(state) {
      var th = state.thread >= 0 ? state.thread : mainThread(P);
      title.textContent = "";
      title.appendChild(el("span", "det-name", threadLabel(P, th)));
      var what = state.range ? fmtUs(state.range[0]) + " – " + fmtUs(state.range[1]) : "the whole run";
      title.appendChild(el("span", "hint", "time order, " + what + (state.thread < 0 ? " · pick another thread above" : "") + " · drag here or on the timeline to zoom in time"));
      var skip = null, focus = ctx.focus();
      if (focus > 0) {
        toggle.hidden = false;
        toggle.firstChild.textContent = "From " + (ctx.info.name(M.func[focus]) || "the step");
        if (fromStep) {
          skip = [];
          for (var fn = M.parent[focus]; fn > 0; fn = M.parent[fn]) skip.push(fn);
          skip.reverse();
        }
      }
      chart.skip = skip;
      chart.set(M, th, state.range, ctx.duration, state.cpuOnly);
      chart.setMatch(state.match);
    }

    ctx.hooks.stackBoxes = function () {
      if (!chart.boxes) return [];
      return chart.boxes.map(function (b) { return { name: ctx.info.name(b.func), x0: b.x0, x1: b.x1, depth: b.d }; });
    };

    return {
      el: panel,
      render: function (state) {
        if (state.thread !== last.thread || state.range !== last.range || state.cpuOnly !== last.cpuOnly) {
          last = { thread: state.thread, range: state.range, cpuOnly: state.cpuOnly, match: state.match };
          draw(state);
        } else if (state.match !== last.match) {
          last.match = state.match;
          chart.setMatch(state.match);
        }
      },
    };
  },
});
