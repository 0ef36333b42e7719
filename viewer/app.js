// app.js — starts the card: decodes the profile, makes the one state and
// the context every panel gets, builds the page from the registered panels
// and wires them: a state change renders every visible panel (a panel
// compares what it drew with what the state holds now); a hidden tab
// renders when shown. Also the error card, keys, the iframe height and the
// test hooks (window.__mfp).

import { guard, setProblemHook } from "./util.js";
import { el, copyText } from "./dom.js";
import { ProfileError, base64ToBytes, inflatePayload, parseProfile } from "./decode.js";
import { buildModel, aggregateCpu, aggregateMemory, focusNode, wholeRunTree } from "./model.js";
import { FuncInfo } from "./funcinfo.js";
import { createStore, memo } from "./store.js";
import { Searcher, compileQuery } from "./search.js";
import { registeredPanels } from "./registry.js";
import { splitNotes, metaError } from "./summary.js";

var timings = { start: performance.now() };
var hooks = {};
var stateExtras = [];
var app = null; // {ctx, views, store} once the card is drawn

function readJson(id) {
  var node = document.getElementById(id);
  if (!node) return null;
  try {
    return JSON.parse(node.textContent);
  } catch (e) {
    return null;
  }
}

function errorBlock(cls, heading, err) {
  var box = el("div", cls);
  box.setAttribute("role", cls.indexOf("banner") >= 0 ? "alert" : "status");
  box.appendChild(el("div", "msg-title", heading));
  if (err) {
    var line = (err.type ? err.type + ": " : "") + (err.message || "");
    if (line) box.appendChild(el("div", "msg-body", line));
    if (err.traceback) {
      var d = el("details", "msg-tb");
      d.appendChild(el("summary", "", "Traceback"));
      d.appendChild(el("pre", "", err.traceback));
      box.appendChild(d);
    }
  }
  return box;
}

function header(title, meta) {
  var h = el("header", "card-head");
  h.appendChild(el("h1", "card-title", title));
  if (meta) {
    var sub = el("div", "card-sub");
    // the interval, start time and the rest are in About this profile
    if (meta.backend) sub.appendChild(el("span", "chip", "backend " + meta.backend));
    if (meta.python) sub.appendChild(el("span", "chip", "Python " + meta.python));
    h.appendChild(sub);
  }
  return h;
}

function showErrorCard(title, why, detail, extra) {
  var root = document.getElementById("mfp-root");
  root.textContent = "";
  root.appendChild(header(title || "Profile", null));
  var card = el("div", "error-card");
  card.setAttribute("role", "alert");
  card.id = "mfp-error-card";
  card.appendChild(el("div", "msg-title", "No profile to show"));
  card.appendChild(el("div", "msg-body", why));
  if (detail) card.appendChild(el("div", "msg-detail", detail));
  if (extra) card.appendChild(el("div", "msg-detail", extra));
  root.appendChild(card);
  ready(true);
}

function showProblem(e) {
  var root = document.getElementById("mfp-root");
  if (!root) return;
  var box = document.getElementById("mfp-problem");
  if (!box) {
    box = el("div", "warn-card");
    box.id = "mfp-problem";
    root.insertBefore(box, root.firstChild);
  }
  box.textContent = "";
  box.appendChild(el("div", "msg-title", "Something in the card went wrong"));
  box.appendChild(el("div", "msg-body", e && e.message ? e.message : String(e)));
}

// Banners above everything: a failed step, the profiler's own error, the
// notes that are news (environment notes wait in About).
function banners(root, meta, extraError) {
  if (meta.step_failed) {
    var b = errorBlock("banner-failed", "Step failed", metaError(meta.step_error) || { type: "", message: "" });
    b.id = "mfp-step-failed";
    root.appendChild(b);
  }
  var perr = metaError(meta.error);
  if (perr) {
    var w = errorBlock("warn-card", "The profiler reported a problem", perr);
    w.id = "mfp-profiler-error";
    root.appendChild(w);
  }
  if (extraError) root.appendChild(errorBlock("warn-card", "Card note", { type: "", message: extraError }));
  var split = splitNotes(meta);
  if (split.live.length) {
    // A snapshot taken while the step ran: the final card replaces it, or
    // (the step was killed) it is the last one.
    var live = el("div", "banner-live");
    live.id = "mfp-live";
    live.setAttribute("role", "status");
    live.appendChild(el("div", "msg-title", "Live snapshot"));
    split.live.forEach(function (line) { live.appendChild(el("div", "msg-body", line)); });
    root.appendChild(live);
  }
  var loud = split.loud;
  if (loud.length) {
    var notes = el("ul", "notes");
    notes.id = "mfp-notes";
    loud.forEach(function (n) { notes.appendChild(el("li", "", n)); });
    root.appendChild(notes);
  }
}

function profileDuration(P) {
  var meta = P.meta;
  if (typeof meta.duration_ns === "number" && meta.duration_ns > 0) return meta.duration_ns / 1000;
  var last = P.sampleT.length ? P.sampleT[P.sampleT.length - 1] : 0;
  P.series.forEach(function (s) { if (s.t.length) last = Math.max(last, s.t[s.t.length - 1] * 1000); });
  return last;
}

// What every panel gets: the profile, the store, and the values derived
// from the state, each computed once per change of what it depends on.
function makeContext(P, M, store) {
  var threadMask = memo(["thread", "process"], function (s) {
    if (s.thread < 0 && s.process < 0) return null;
    var mask = new Uint8Array(P.threadTid.length);
    for (var i = 0; i < mask.length; i++) mask[i] = s.thread >= 0 ? (i === s.thread ? 1 : 0) : P.threadProcess[i] === s.process ? 1 : 0;
    return mask;
  });
  // a range needs timed samples; without them (a converted cProfile run)
  // the panels keep showing the whole run, and the range badge says so
  var filters = function (s) {
    return { mask: threadMask(s), cpuOnly: s.cpuOnly, range: P.sampleCount > 0 ? s.range : null };
  };
  var focus = null;
  var ctx = {
    P: P,
    M: M,
    meta: P.meta,
    info: new FuncInfo(P),
    duration: profileDuration(P),
    timings: timings,
    hooks: hooks,
    stateExtras: stateExtras,
    get: store.get,
    set: store.set,
    threadMask: threadMask,
    filters: filters,
    cpuTree: memo(["thread", "process", "cpuOnly", "range"], function (s) {
      var t0 = performance.now(), f = filters(s);
      var tree = !f.mask && !f.range ? wholeRunTree(M, f.cpuOnly) : aggregateCpu(M, f);
      timings.aggregate = performance.now() - t0;
      return tree;
    }),
    cpuTreeOnCpu: memo(["thread", "process", "range"], function (s) {
      var f = filters(s);
      return !f.mask && !f.range ? wholeRunTree(M, true) : aggregateCpu(M, { mask: f.mask, cpuOnly: true, range: f.range });
    }),
    // Memory rows have a process, not a thread: a thread selects its process.
    memTree: memo(["memWhich", "process", "thread"], function (s) {
      return aggregateMemory(M, s.memWhich, s.thread >= 0 ? P.threadProcess[s.thread] : s.process);
    }),
    // the step function's node in the whole-run tree (META "focus"), or -1
    focus: function () {
      if (focus === null) {
        // a Metaflow step's function, or the script `python -m metaflow_profiler run` ran;
        // the whole run's tree is the first view's, so usually already there
        var want = typeof P.meta.focus === "string" && P.meta.focus ? P.meta.focus : P.meta.entry;
        focus = focusNode(M, wholeRunTree(M, false), want);
      }
      return focus;
    },
    hasTab: function (id) { return !!(app && app.tabs[id]); },
  };
  return ctx;
}

function makeTabs(ctx, tabs) {
  var nav = el("nav", "tabs");
  nav.setAttribute("role", "tablist");
  var buttons = {};
  tabs.forEach(function (t) {
    var b = el("button", "tab", t.spec.tab);
    b.type = "button";
    b.id = "mfp-tab-" + t.spec.id;
    b.setAttribute("role", "tab");
    b.addEventListener("click", guard(function () { ctx.set({ tab: t.spec.id }); }));
    buttons[t.spec.id] = b;
    nav.appendChild(b);
  });
  return { nav: nav, buttons: buttons };
}

function visible(entry, state) {
  return entry.spec.slot === "head" || state.tab === entry.spec.id;
}

function renderAll(state) {
  var t0 = performance.now();
  app.entries.forEach(function (e) {
    if (!e.view || !e.view.render || !visible(e, state)) return;
    if (e.spec.slot === "tab") e.view.el.hidden = false;
    var t1 = performance.now();
    e.view.render(state);
    timings["render_" + e.spec.id] = performance.now() - t1;
  });
  timings.lastRecompute = performance.now() - t0;
}

function onState(state, changed) {
  if (changed.foldImports) {
    rebuild(state);
    return;
  }
  if (changed.query || changed.regex) {
    app.searcher.run(state.query, state.regex);
    // the old result no longer belongs to the query: the next round draws
    if (state.query && (state.match || state.searchError)) {
      app.store.set({ match: null, searchError: null });
      return;
    }
  }
  if (changed.tab) {
    Object.keys(app.tabs).forEach(function (id) {
      app.tabs[id].view.el.hidden = id !== state.tab;
      app.tabButtons[id].setAttribute("aria-selected", String(id === state.tab));
    });
  }
  renderAll(state);
}

function activeZoomable(state) {
  var t = app.tabs[state.tab];
  return t && t.view.zoomable ? t.view.zoomable : null;
}

function onKey(e) {
  var state = app.store.get(), ctx = app.ctx;
  var tag = e.target && e.target.tagName;
  var typing = tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  var search = document.getElementById("mfp-search");
  var fg = activeZoomable(state);
  if (e.key === "Escape") {
    if (state.query || document.activeElement === search) {
      ctx.set({ query: "" });
      if (search) search.blur();
    } else if (fg && fg.zoom > 0) {
      fg.setZoom(0);
    } else if (state.range) {
      ctx.set({ range: null });
    }
    e.preventDefault();
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/" && search) {
    e.preventDefault();
    search.focus();
    search.select();
  } else if ((e.key === "+" || e.key === "=") && fg) {
    fg.zoomIn();
  } else if ((e.key === "-" || e.key === "_") && fg) {
    fg.zoomOut();
  } else if (e.key === "c" && fg) {
    var node = fg.hover > 0 ? fg.hover : fg.selected;
    if (node > 0 && fg.tree.func[node] >= 0) {
      copyText(ctx.info.name(fg.tree.func[node]));
    }
  }
}

var INITIAL = {
  thread: -1,
  process: -1,
  cpuOnly: false,
  range: null,
  query: "",
  regex: false,
  match: null,
  searchError: null,
  selFunc: -1,
  tab: "flame",
  tableSource: "cpu",
  memWhich: "live",
  foldImports: true,
};

// card: what stays when the card is drawn again (P, payload, the models
// built so far by fold setting, title, extraError, painted)
function renderCard(card, state) {
  var P = card.P;
  var M = card.models[state.foldImports] || (card.models[state.foldImports] = buildModel(P, state.foldImports));
  var title = card.title, extraError = card.extraError;
  var root = document.getElementById("mfp-root");
  root.textContent = "";
  var store = createStore(state);
  var ctx = makeContext(P, M, store);
  app = { card: card, ctx: ctx, store: store, payload: card.payload, entries: [], tabs: {}, tabButtons: {} };
  app.searcher = new Searcher(ctx.info, P.funcName.length, function (match, error) {
    store.set({ match: match, searchError: error });
  });
  root.appendChild(header(title || (typeof P.meta.title === "string" && P.meta.title) || "Profile", P.meta));
  banners(root, P.meta, extraError);
  var tabEntries = [];
  registeredPanels().forEach(function (spec) {
    if (spec.available && !spec.available(ctx)) return;
    var t0 = performance.now();
    var entry = { spec: spec, view: spec.create(ctx) };
    timings["create_" + spec.id] = performance.now() - t0;
    if (!entry.view) return;
    app.entries.push(entry);
    if (spec.slot === "head") root.appendChild(entry.view.el);
    else tabEntries.push(entry);
  });
  var main = el("section", "views");
  var tabs = makeTabs(ctx, tabEntries);
  app.tabButtons = tabs.buttons;
  main.appendChild(tabs.nav);
  tabEntries.forEach(function (e) {
    app.tabs[e.spec.id] = e;
    e.view.el.hidden = e.spec.id !== store.get().tab;
    tabs.buttons[e.spec.id].setAttribute("aria-selected", String(e.spec.id === store.get().tab));
    main.appendChild(e.view.el);
  });
  root.appendChild(main);
  root.appendChild(el("footer", "card-foot", "Keys: / search · Esc clear · + zoom in · − zoom out · c copy name · drag on a chart to select a range"));
  var t2 = performance.now();
  app.entries.forEach(function (e) {
    if (!e.view.start) return;
    var t1 = performance.now();
    e.view.start(store.get());
    timings["start_" + e.spec.id] = performance.now() - t1;
  });
  timings.start_panels = performance.now() - t2;
  // a store left behind by a redraw (a search still running) changes nothing
  store.subscribe(function (s, changed) { if (app.store === store) onState(s, changed); });
  renderAll(store.get());
  if (card.listening) return;
  card.listening = true;
  document.addEventListener("keydown", guard(onKey));
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    var redraw = guard(function () {
      app.entries.forEach(function (e) { if (e.view.redraw) e.view.redraw(); });
    });
    if (mq.addEventListener) mq.addEventListener("change", redraw);
  }
}

// Import machinery folded or frame by frame: another model, so the card is
// drawn again from it, in the state it was in.
function rebuild(state) {
  var old = app;
  old.searcher.run("", false); // a search in flight reports to nobody
  renderCard(old.card, state);
  if (state.query && !state.match && !state.searchError) app.searcher.run(state.query, state.regex, true);
  if (old.card.painted) afterPaintPanels();
}

// Metaflow's UI sizes a cross-origin card iframe from this message.
function setupHeight() {
  if (window.parent === window) return;
  var last = -1;
  var send = function () {
    var h = Math.ceil(document.documentElement.scrollHeight);
    if (h === last) return;
    last = h;
    try {
      window.parent.postMessage({ type: "PluginHeightCheck", height: h }, "*");
    } catch (e) {
      /* a parent that refuses messages only loses auto-height */
    }
  };
  if (window.ResizeObserver) new ResizeObserver(guard(send)).observe(document.documentElement);
  window.addEventListener("load", guard(send));
  send();
}

// After the first frame: what the first view did not need (SAMPLES of a big
// profile, the sampled threads' line), then data-mfp-complete.
function ready(error) {
  requestAnimationFrame(function () {
    timings.firstPaint = performance.now();
    // for a trace (bench_card.py --cpu reads the main thread's CPU up to it)
    if (performance.mark) performance.mark("mfp-first-paint");
    window.__mfp.ready = true;
    window.__mfp.error = error;
    document.documentElement.dataset.mfpReady = error ? "error" : "ok";
    if (error || !app) complete();
    else setTimeout(afterPaint, 0);
  });
}

async function afterPaint() {
  try {
    var P = app.ctx.P, columns = null, err = null;
    if (app.payload.cut) {
      try {
        columns = await app.payload.rest();
      } catch (e) {
        if (!(e instanceof ProfileError)) throw e;
        err = e;
      }
      timings.inflatedRest = performance.now();
    }
    err = P.loadSamples(columns, err);
    if (err) {
      showProblem({ message: "The time-ordered samples could not be read (" + err.message + "): time ranges, the stack chart and activity over time are not available; the whole-run views come from TOTALS." });
    }
    app.card.painted = true;
    afterPaintPanels();
  } catch (e) {
    showProblem(e);
  } finally {
    complete();
  }
}

function afterPaintPanels() {
  app.entries.forEach(function (e) {
    if (e.view.afterPaint) guard(e.view.afterPaint)(app.store.get());
  });
}

function complete() {
  timings.complete = performance.now();
  window.__mfp.complete = true;
  document.documentElement.dataset.mfpComplete = "1";
}

// Read-only hooks for tests and bench/bench_card.py: the same paths the
// mouse takes. Panels add their own to `hooks` (boxes, stackBoxes, ...).
function installHooks() {
  window.__mfp = {
    ready: false,
    complete: false,
    timings: timings,
    state: function () {
      if (!app) return {};
      var s = app.store.get();
      var out = {
        thread: s.thread, process: s.process, cpuOnly: s.cpuOnly, range: s.range, query: s.query, regex: s.regex,
        tab: s.tab, selFunc: s.selFunc, searching: app.searcher.busy, foldImports: s.foldImports,
        rootTotal: app.ctx.cpuTree(s).total[0],
      };
      stateExtras.forEach(function (fn) { fn(out); });
      return out;
    },
    set: function (patch) {
      var t0 = performance.now();
      app.store.set(patch);
      return performance.now() - t0;
    },
    selectRange: function (a, b) {
      var t0 = performance.now();
      app.store.set({ range: a === null || !(b > a) ? null : [a, b] });
      return performance.now() - t0;
    },
    duration: function () { return app ? app.ctx.duration : 0; },
  };
  ["boxes", "stackBoxes", "sandwichNames", "memoryTotal"].forEach(function (name) {
    window.__mfp[name] = function () { return hooks[name] ? hooks[name].apply(null, arguments) : []; };
  });
  // the search's matcher on one text, to check it against the browser's RegExp
  hooks.regexTest = function (pattern, text) {
    var m = compileQuery(pattern, true);
    return m.error ? { error: m.error } : { match: m.test(text) };
  };
  hooks.searchRuns = function () { return app ? app.searcher.runs : 0; };
  window.__mfp.hook = function (name) {
    var args = Array.prototype.slice.call(arguments, 1);
    return hooks[name] ? hooks[name].apply(null, args) : undefined;
  };
}

async function start() {
  setProblemHook(showProblem);
  setupHeight();
  var title = readJson("mfp-title") || "";
  var extraError = readJson("mfp-error");
  // where the page's writer left the toggles (Profile.fold_imports)
  var initial = Object.assign({}, INITIAL, { foldImports: (readJson("mfp-options") || {}).fold_imports !== false });
  var dataNode = document.getElementById("mfp-data");
  var payload = dataNode ? dataNode.textContent.trim() : "";
  if (!payload) {
    showErrorCard(title, extraError || "This card has no profile data.", null, null);
    return;
  }
  var P, payload, card;
  try {
    var bytes;
    try {
      bytes = base64ToBytes(payload);
    } catch (e) {
      throw new ProfileError("the embedded data is not valid base64");
    }
    timings.base64 = performance.now();
    payload = await inflatePayload(bytes, readJson("mfp-parts"));
    timings.inflated = performance.now();
    P = parseProfile(payload.head, payload.cut);
    timings.parsed = performance.now();
    // the Python readers' default: import machinery folded (a toggle unfolds it)
    card = { P: P, payload: payload, title: title, extraError: extraError, models: {} };
    card.models[initial.foldImports] = buildModel(P, initial.foldImports);
    timings.model = performance.now();
  } catch (e) {
    showErrorCard(title, "The profile in this card could not be read: " + (e && e.message ? e.message : String(e)), null, extraError);
    return;
  }
  try {
    renderCard(card, initial);
    timings.rendered = performance.now();
    ready(false);
  } catch (e) {
    showErrorCard(title, "The card could not be drawn: " + (e && e.message ? e.message : String(e)), null, extraError);
  }
}

// The script comes before the data in the page, so that it is compiled
// while the data still loads; it starts once the data is there.
function boot() {
  installHooks();
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
}

function run() {
  start().catch(function (e) {
    try {
      showErrorCard("", "The card failed to start: " + (e && e.message ? e.message : String(e)), null, null);
    } catch (e2) {
      /* nothing left to show it with */
    }
  });
}

export { boot };
