// panels/controls.js — the sticky bar: thread/process selection, wall or
// on-CPU, search, and the selected time range. Each control only sets the
// state; what it shows comes from the state in render().

import { registerPanel } from "../registry.js";
import { guard, pct, fmtUs } from "../util.js";
import { el, seg } from "../dom.js";
import { threadTimes, matchedWeight } from "../model.js";
import { hasOnCpu, threadLabel } from "../summary.js";

function processLabel(P, j) {
  var p = P.processes[j];
  return (p.name || "process") + (p.pid ? " (pid " + p.pid + ")" : "") + (p.partial ? " · partial" : "");
}

// <select> values: "-1" every thread, "<i>" thread i, "p<j>" process j.
function selectionValue(state) {
  if (state.thread >= 0) return String(state.thread);
  if (state.process >= 0) return "p" + state.process;
  return "-1";
}

function threadSelect(ctx) {
  var P = ctx.P, nt = P.threadTid.length, np = P.processes.length;
  var lab = el("label", "ctl");
  lab.appendChild(el("span", "ctl-label", np > 1 ? "Process / thread" : "Thread"));
  var sel = el("select", "thread-select");
  sel.id = "mfp-thread";
  var all = el("option", "", (np > 1 ? "All processes, all threads (" : "All threads (") + nt + ")");
  all.value = "-1";
  sel.appendChild(all);
  // each thread's sampled time, so the busy ones stand out in the list
  var tt = threadTimes(P);
  var option = function (i) {
    var extra = tt.wall[i] > 0 ? " — " + fmtUs(tt.wall[i]) + (tt.anyCpu ? ", " + pct(tt.cpu[i] / tt.wall[i]) + " on CPU" : "") : "";
    var o = el("option", "", threadLabel(P, i) + extra);
    o.value = String(i);
    return o;
  };
  if (np > 1) {
    for (var j = 0; j < np; j++) {
      var group = el("optgroup");
      group.label = processLabel(P, j);
      var whole = el("option", "", "all threads of " + processLabel(P, j));
      whole.value = "p" + j;
      group.appendChild(whole);
      for (var i = 0; i < nt; i++) if (P.threadProcess[i] === j) group.appendChild(option(i));
      sel.appendChild(group);
    }
  } else {
    for (var k = 0; k < nt; k++) sel.appendChild(option(k));
  }
  sel.addEventListener("change", guard(function () {
    var v = sel.value;
    if (v.charAt(0) === "p") ctx.set({ process: parseInt(v.slice(1), 10), thread: -1 });
    else ctx.set({ process: -1, thread: parseInt(v, 10) });
  }));
  lab.appendChild(sel);
  return { el: lab, select: sel };
}

registerPanel({
  id: "controls",
  slot: "head",
  order: 30,
  create: function (ctx) {
    var P = ctx.P;
    var bar = el("section", "controls");
    bar.id = "mfp-controls";
    var threads = null;
    if (P.threadTid.length > 1) {
      threads = threadSelect(ctx);
      bar.appendChild(threads.el);
    }
    var mode = seg([["wall", "Wall clock"], ["cpu", "On CPU"]], ctx.get().cpuOnly ? "cpu" : "wall", function (v) {
      ctx.set({ cpuOnly: v === "cpu" });
    });
    mode.id = "mfp-mode";
    mode.title = "Wall clock: every sample. On CPU: only samples where the thread was running.";
    // a tracer does not know whether a thread ran: "On CPU" would be empty
    if (hasOnCpu(P) || !(P.meta.counts === "calls" || P.meta.weights === "self_time")) bar.appendChild(mode);

    // only when the profile has import machinery to fold
    if (P.imports && P.imports.any) {
      var fold = el("label", "ctl fold-toggle");
      fold.title = "On: each chain of import machinery (<frozen importlib._bootstrap> frames) is one frame \"import <module>\", as the Python readers show it (Profile.fold_imports). Off: every frame.";
      var box = el("input");
      box.type = "checkbox";
      box.id = "mfp-fold-imports";
      box.checked = !!ctx.get().foldImports;
      box.addEventListener("change", guard(function () { ctx.set({ foldImports: box.checked }); }));
      fold.appendChild(box);
      fold.appendChild(el("span", "ctl-label", "Fold imports"));
      bar.appendChild(fold);
    }

    var search = el("div", "search");
    var input = el("input", "search-input");
    input.id = "mfp-search";
    input.type = "search";
    input.placeholder = "Search functions  ( / )";
    input.setAttribute("aria-label", "Search functions");
    input.autocomplete = "off";
    input.spellcheck = false;
    var rx = el("button", "rx-btn", ".*");
    rx.type = "button";
    rx.id = "mfp-regex";
    rx.title = "Regular expression (no backreferences or lookarounds: search never stalls the page)";
    rx.setAttribute("aria-pressed", "false");
    var share = el("span", "match-share");
    share.id = "mfp-match";
    share.setAttribute("aria-live", "polite");
    input.addEventListener("input", guard(function () { ctx.set({ query: input.value }); }));
    rx.addEventListener("click", guard(function () { ctx.set({ regex: !ctx.get().regex }); }));
    search.appendChild(input);
    search.appendChild(rx);
    search.appendChild(share);
    bar.appendChild(search);

    var range = el("div", "range-badge");
    range.id = "mfp-range";
    range.hidden = true;
    var rangeText = el("span", "range-text");
    var clear = el("button", "btn small", "Clear range");
    clear.type = "button";
    clear.id = "mfp-range-clear";
    clear.addEventListener("click", guard(function () { ctx.set({ range: null }); }));
    range.appendChild(rangeText);
    var rangeNote = el("span", "range-note", "no timed samples in this profile: the flame graph shows the whole run");
    rangeNote.hidden = true;
    range.appendChild(rangeNote);
    range.appendChild(clear);
    bar.appendChild(range);

    function shareText(state) {
      if (state.searchError) return "invalid regex: " + state.searchError;
      if (!state.query) return "";
      if (!state.match) return "searching…";
      var mem = state.tab === "memory" || (state.tab === "table" && state.tableSource === "mem");
      var tree = mem && ctx.memTree ? ctx.memTree(state) : ctx.cpuTree(state);
      var root = tree.total[0], w = matchedWeight(tree, state.match), nf = 0;
      for (var f = 0; f < state.match.length; f++) nf += state.match[f];
      share.dataset.share = root > 0 ? String(w / root) : "0";
      if (!nf) return "no match";
      return "matched " + pct(root > 0 ? w / root : 0) + (mem ? " of memory" : " of time") + " · " + nf + " function" + (nf === 1 ? "" : "s");
    }

    return {
      el: bar,
      search: input,
      render: function (state) {
        if (input.value !== state.query) input.value = state.query;
        rx.setAttribute("aria-pressed", String(!!state.regex));
        input.classList.toggle("invalid", !!state.searchError);
        share.textContent = shareText(state);
        if (threads) threads.select.value = selectionValue(state);
        range.hidden = !state.range;
        if (state.range) rangeText.textContent = "Range " + fmtUs(state.range[0]) + " – " + fmtUs(state.range[1]) + " (" + fmtUs(state.range[1] - state.range[0]) + ")";
        rangeNote.hidden = !(state.range && !P.sampleCount);
      },
    };
  },
});
