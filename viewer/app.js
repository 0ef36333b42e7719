// app.js — builds the card from the decoded profile and wires the views.
//
// One state object (thread, wall/on-CPU, time range, search, selected
// function) drives every panel, as in the Firefox Profiler: a change of any
// of them recomputes the CPU tree once and each visible view redraws from
// it. Every string that comes from the profile reaches the page through
// textContent or fillText only.

var state = {
  thread: -1,
  cpuOnly: false,
  range: null,
  query: "",
  regex: false,
  match: null,
  tab: "flame",
  tableSource: "cpu",
  selFunc: -1,
  memWhich: "live",
  sort: { key: "self", desc: true },
};
var ui = {};
var timings = { start: performance.now() };

function readJson(id) {
  var node = document.getElementById(id);
  if (!node) return null;
  try {
    return JSON.parse(node.textContent);
  } catch (e) {
    return null;
  }
}

function metaError(v) {
  if (!v) return null;
  if (typeof v === "string") return { type: "", message: v };
  if (typeof v === "object") {
    return { type: String(v.type || ""), message: String(v.message || ""), traceback: v.traceback ? String(v.traceback) : "" };
  }
  return { type: "", message: String(v) };
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
  ready({ error: true });
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

function header(title, meta) {
  var h = el("header", "card-head");
  h.appendChild(el("h1", "card-title", title));
  if (meta) {
    var sub = el("div", "card-sub");
    var bits = [];
    if (meta.backend) bits.push("backend " + meta.backend);
    if (meta.python) bits.push("Python " + meta.python);
    // the interval, start time and the rest are in About this profile
    bits.forEach(function (b) { sub.appendChild(el("span", "chip", b)); });
    h.appendChild(sub);
  }
  return h;
}

function seriesByName(P, name) {
  for (var i = 0; i < P.series.length; i++) if (P.series[i].name === name) return P.series[i];
  return null;
}

function peakAvg(s) {
  if (!s || !s.v.length) return null;
  var m = -Infinity, sum = 0;
  for (var i = 0; i < s.v.length; i++) {
    if (s.v[i] > m) m = s.v[i];
    sum += s.v[i];
  }
  return { peak: m, avg: sum / s.v.length, last: s.v[s.v.length - 1] };
}

function statCard(grid, label, value, sub, key, alert) {
  var c = el("div", alert ? "stat alert" : "stat");
  c.dataset.stat = key;
  c.appendChild(el("div", "stat-label", label));
  c.appendChild(el("div", "stat-value", value));
  if (sub) c.appendChild(el("div", "stat-sub", sub));
  grid.appendChild(c);
}

function objectOr(v) {
  return v && typeof v === "object" && !Array.isArray(v) ? v : {};
}

function finite(v) {
  return typeof v === "number" && isFinite(v) ? v : null;
}

// META "timeline": the poller's exact peaks, averages and totals over every
// poll (the series may be thinned); "limits": what the process may use.
function pollerInfo(meta) {
  var t = objectOr(meta.timeline);
  return { peaks: objectOr(t.peaks), averages: objectOr(t.averages), totals: objectOr(t.totals), limits: objectOr(meta.limits) };
}

// Peak and average of a series: the poller's exact figures when META has
// them, else read off the points.
function figures(P, info, name) {
  var s = peakAvg(seriesByName(P, name));
  var pk = finite(info.peaks[name]), av = finite(info.averages[name]);
  if (pk === null && av === null) return s;
  return { peak: pk !== null ? pk : s ? s.peak : 0, avg: av !== null ? av : s ? s.avg : 0, last: s ? s.last : pk };
}

// Area under a rate series: each point stands for the time since the
// previous one (the first since the start), so the sum is the total.
function rateTotal(s) {
  if (!s) return 0;
  var sum = 0, prev = 0;
  for (var i = 0; i < s.v.length; i++) {
    sum += (s.v[i] * Math.max(s.t[i] - prev, 0)) / 1000;
    prev = s.t[i];
  }
  return sum;
}

// The memory the process may use before the kernel steps in: the cgroup
// limit (a machine's total RAM is not a limit worth a percentage).
function memoryLimit(P, info) {
  var l = finite(info.limits.memory_limit_bytes);
  if (l !== null && l > 0 && l < Math.pow(2, 60)) return l;
  var s = peakAvg(seriesByName(P, "cgroup_mem_limit_bytes"));
  return s && s.last > 0 && s.last < Math.pow(2, 60) ? s.last : 0;
}

function cpuCapacity(limits) {
  var q = finite(limits.cpu_quota_cores), n = finite(limits.cpus);
  if (q !== null && q > 0) return "of a " + fmtNum(q, q % 1 ? 1 : 0) + "-CPU quota";
  if (n !== null && n > 0) return "of " + n + " CPU" + (n === 1 ? "" : "s");
  return "";
}

function isCalls(meta) {
  return meta.counts === "calls";
}

function buildStats(P, meta, duration) {
  var grid = el("section", "stats");
  grid.id = "mfp-stats";
  var info = pollerInfo(meta), limits = info.limits;
  if (duration > 0) statCard(grid, "Duration", fmtUs(duration), null, "duration");
  var recorded = 0;
  for (var i = 0; i < P.totCount.length; i++) recorded += P.totCount[i];
  if (isCalls(meta)) {
    var calls = finite(meta.calls_traced) || recorded;
    if (calls > 0) statCard(grid, "Calls", fmtCount(calls), "every call timed", "samples");
  } else {
    var taken = finite(meta.samples_taken) || recorded;
    if (taken > 0) {
      var sub = meta.interval_ns ? "every " + fmtUs(meta.interval_ns / 1000) : null;
      statCard(grid, "Samples", fmtCount(taken), sub, "samples");
    }
  }
  var cpu = figures(P, info, "cpu_pct");
  if (cpu && cpu.peak > 0) {
    var cap = cpuCapacity(limits);
    statCard(grid, "Peak CPU", fmtNum(cpu.peak) + "%", "avg " + fmtNum(cpu.avg) + "%" + (cap ? " " + cap : ""), "cpu");
  }
  var thr = figures(P, info, "cpu_throttled_pct");
  if ((thr && thr.peak > 0) || limits.cpu_throttled_s > 0) {
    statCard(grid, "CPU throttled", thr && thr.peak > 0 ? fmtNum(thr.peak) + "%" : fmtUs(limits.cpu_throttled_s * 1e6),
      limits.cpu_throttled_s > 0 ? "total " + fmtUs(limits.cpu_throttled_s * 1e6) : "peak", "throttled", true);
  }
  var oom = figures(P, info, "cgroup_oom_kills");
  var ooms = Math.max(oom ? oom.peak : 0, limits.oom_kills > 0 ? limits.oom_kills : 0);
  if (ooms > 0) statCard(grid, "OOM kills", fmtNum(ooms, 0), "in this cgroup", "oom", true);
  var rss = figures(P, info, "rss_bytes");
  var memLimit = memoryLimit(P, info);
  if (rss && rss.peak > 0) {
    if (memLimit > 0) {
      var share = rss.peak / memLimit;
      statCard(grid, "Peak RSS", fmtBytes(rss.peak), "of a " + fmtBytes(memLimit) + " limit (" + pct(share) + ")", "rss", share >= 0.9);
    } else {
      statCard(grid, "Peak RSS", fmtBytes(rss.peak), "avg " + fmtBytes(rss.avg), "rss");
    }
  } else if (memLimit > 0) {
    statCard(grid, "Memory limit", fmtBytes(memLimit), "cgroup", "memlimit");
  }
  var io = [
    ["disk_read_Bps", "disk_read_bytes", "Disk read", "read", "disk_read"],
    ["disk_write_Bps", "disk_write_bytes", "Disk written", "written", "disk_write"],
    ["net_recv_Bps", "net_recv_bytes", "Net received", "received", "net_recv"],
    ["net_sent_Bps", "net_sent_bytes", "Net sent", "sent", "net_sent"],
  ];
  io.forEach(function (d) {
    var s = figures(P, info, d[0]);
    var total = finite(info.totals[d[1]]);
    if (total === null) total = rateTotal(seriesByName(P, d[0]));
    if (!(total > 0) && !(s && s.peak > 0)) return;
    statCard(grid, d[2], fmtBytes(total), s && s.peak > 0 ? "peak " + fmtBytes(s.peak) + "/s" : d[3] + " in total", d[4]);
  });
  P.series.forEach(function (s) {
    var m = /^gpu(\d+)_util_pct$/.exec(s.name);
    if (m) {
      var g = figures(P, info, s.name);
      if (g && g.peak > 0) statCard(grid, "GPU " + m[1] + " util", fmtNum(g.peak) + "%", "avg " + fmtNum(g.avg) + "%", "gpu" + m[1] + "_util");
    }
    m = /^gpu(\d+)_mem_bytes$/.exec(s.name);
    if (m) {
      var gm = figures(P, info, s.name);
      var tot = peakAvg(seriesByName(P, "gpu" + m[1] + "_mem_total_bytes"));
      if (gm && gm.peak > 0) statCard(grid, "GPU " + m[1] + " memory", fmtBytes(gm.peak), tot && tot.peak > 0 ? "of " + fmtBytes(tot.peak) : "peak", "gpu" + m[1] + "_mem");
    }
  });
  var ths = figures(P, info, "threads");
  var nthreads = P.threadTid.length;
  if (ths && ths.peak > 0) statCard(grid, "Threads", fmtNum(ths.peak, 0), "peak", "threads");
  else if (nthreads > 1) statCard(grid, "Threads", String(nthreads), isCalls(meta) ? "traced" : "sampled", "threads");
  if (meta.samples_dropped > 0) {
    statCard(grid, "Dropped samples", fmtCount(meta.samples_dropped), dropReasons(meta) || null, "dropped");
  }
  return grid;
}

function dropReasons(meta) {
  var reasons = [], r = objectOr(meta.drop_reasons);
  Object.keys(r).forEach(function (k) { if (r[k]) reasons.push(k + " " + fmtCount(r[k])); });
  return reasons.join(", ");
}

// Notes about what the machine lacks (no GPU library, a cgroup file that is
// not there) say the same on every card from it: they go in About, quietly.
// Everything else (memory at peak, a cut call tree, a slow sampler) stays
// on top.
var QUIET_NOTE = /^(GPU\b|cgroup:|disk:|network:|process:|child processes:)/;

function splitNotes(meta) {
  var loud = [], quiet = [];
  if (Array.isArray(meta.notes)) {
    meta.notes.forEach(function (n) {
      var text = typeof n === "string" ? n : JSON.stringify(n);
      (QUIET_NOTE.test(text) ? quiet : loud).push(text);
    });
  }
  return { loud: loud, quiet: quiet };
}

// "About this profile": how it was recorded, collapsed by default.
function buildAbout(P, meta, duration, quietNotes) {
  var box = el("details", "about");
  box.id = "mfp-about";
  var summary = el("summary", "about-summary");
  summary.appendChild(el("span", "about-title", "About this profile"));
  var gist = [];
  var rows = [];
  var mode = meta.sampler_mode || meta.tracer_mechanism;
  if (meta.backend) {
    rows.push(["Backend", String(meta.backend) + (mode ? " — " + mode : "")]);
    gist.push(String(meta.backend));
  }
  if (meta.python) rows.push(["Python", String(meta.python)]);
  var secs = duration / 1e6;
  if (isCalls(meta)) {
    var calls = finite(meta.calls_traced);
    rows.push(["Recording", "every call timed (deterministic)" + (calls ? ": " + fmtCount(calls) + " calls" : "") + "; counts are calls, times are self time summed up the tree"]);
    gist.push("every call");
  } else {
    var taken = finite(meta.samples_taken);
    var line = [];
    if (meta.interval_ns > 0) line.push("every " + fmtUs(meta.interval_ns / 1000) + " requested");
    if (taken !== null && secs > 0) line.push(fmtNum(taken / secs) + " samples/s achieved (" + fmtCount(taken) + " in " + fmtUs(duration) + ")");
    if (line.length) rows.push(["Sampling", line.join(" · ")]);
    if (meta.interval_ns > 0) gist.push(fmtUs(meta.interval_ns / 1000));
    if (taken !== null && secs > 0) gist.push(fmtNum(taken / secs) + "/s");
    if (finite(meta.sampler_busy_ns) && secs > 0) rows.push(["Sampler cost", fmtUs(meta.sampler_busy_ns / 1000) + " busy (" + pct(meta.sampler_busy_ns / 1e9 / secs) + " of the run, on its own thread)"]);
    if (typeof meta.samples_dropped === "number") {
      var why = dropReasons(meta);
      rows.push(["Dropped", meta.samples_dropped > 0 ? fmtCount(meta.samples_dropped) + (why ? " (" + why + ")" : "") : "none"]);
      if (meta.samples_dropped > 0) gist.push(fmtCount(meta.samples_dropped) + " dropped");
    }
  }
  if (meta.samples_decimation > 1) {
    rows.push(["Time order", "every " + meta.samples_decimation + "th sample kept for ranges and the stack chart (the flame graph of the whole run has all)"]);
    gist.push("decimated ×" + meta.samples_decimation);
  }
  var t = objectOr(meta.timeline), limits = objectOr(meta.limits);
  var pollEvery = finite(t.interval_s) || (finite(meta.timeline_interval_ns) || 0) / 1e9;
  if (pollEvery > 0 && P.series.length) rows.push(["Resources", "polled every " + fmtUs(pollEvery * 1e6) + (finite(t.polls) ? " (" + fmtCount(t.polls) + " polls)" : "")]);
  var mach = [];
  if (limits.cpus > 0) mach.push(limits.cpus + " CPU" + (limits.cpus === 1 ? "" : "s"));
  if (limits.cpu_quota_cores > 0) mach.push("CPU quota " + fmtNum(limits.cpu_quota_cores, 2) + " cores");
  if (limits.memory_total_bytes > 0) mach.push(fmtBytes(limits.memory_total_bytes) + " RAM");
  if (limits.memory_limit_bytes > 0) mach.push("memory limit " + fmtBytes(limits.memory_limit_bytes));
  if (limits.cgroup_memory_peak_bytes > 0) mach.push("cgroup memory peak " + fmtBytes(limits.cgroup_memory_peak_bytes));
  if (limits.cgroup) mach.push("cgroup " + limits.cgroup);
  if (mach.length) rows.push(["Machine", mach.join(" · ")]);
  if (meta.start_unix_ns) {
    var d = new Date(meta.start_unix_ns / 1e6);
    if (!isNaN(d.getTime())) rows.push(["Started", d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC")]);
  }
  if (typeof meta.focus === "string" && meta.focus) rows.push(["Opens on", meta.focus]);
  if (quietNotes.length) gist.push(quietNotes.length + " environment note" + (quietNotes.length === 1 ? "" : "s"));
  summary.appendChild(el("span", "about-gist", gist.join(" · ")));
  box.appendChild(summary);
  var dl = el("dl", "about-list");
  rows.forEach(function (r) {
    dl.appendChild(el("dt", "", r[0]));
    dl.appendChild(el("dd", "", r[1]));
  });
  box.appendChild(dl);
  if (quietNotes.length) {
    var ul = el("ul", "about-notes");
    ul.id = "mfp-env-notes";
    quietNotes.forEach(function (n) { ul.appendChild(el("li", "", n)); });
    box.appendChild(ul);
  }
  return box;
}

function seg(options, current, onPick) {
  var g = el("div", "seg");
  g.setAttribute("role", "group");
  options.forEach(function (o) {
    var b = el("button", "seg-btn", o[1]);
    b.type = "button";
    b.dataset.value = o[0];
    b.setAttribute("aria-pressed", String(o[0] === current));
    b.addEventListener("click", guard(function () {
      Array.prototype.forEach.call(g.children, function (x) { x.setAttribute("aria-pressed", String(x === b)); });
      onPick(o[0]);
    }));
    g.appendChild(b);
  });
  return g;
}

function threadLabel(P, i) {
  var name = P.strings[P.threadName[i]] || "thread";
  var s = name + " (" + P.threadTid[i] + ")";
  if (P.threadFlags[i] & 1) s += " · main";
  return s;
}

function hasOnCpu(P) {
  for (var k = 0; k < P.totFlags.length; k++) if (P.totFlags[k] & 1) return true;
  return false;
}

function buildControls(P) {
  var bar = el("section", "controls");
  bar.id = "mfp-controls";
  if (P.threadTid.length > 1) {
    var lab = el("label", "ctl");
    lab.appendChild(el("span", "ctl-label", "Thread"));
    var sel = el("select", "thread-select");
    sel.id = "mfp-thread";
    var all = el("option", "", "All threads (" + P.threadTid.length + ")");
    all.value = "-1";
    sel.appendChild(all);
    // each thread's sampled time, so the busy ones stand out in the list
    var wall = new Float64Array(P.threadTid.length), oncpu = new Float64Array(P.threadTid.length);
    for (var k = 0; k < P.totThread.length; k++) {
      wall[P.totThread[k]] += P.totWeight[k];
      if (P.totFlags[k] & 1) oncpu[P.totThread[k]] += P.totWeight[k];
    }
    var anyCpu = hasOnCpu(P);
    for (var i = 0; i < P.threadTid.length; i++) {
      var extra = wall[i] > 0 ? " — " + fmtUs(wall[i]) + (anyCpu ? ", " + pct(oncpu[i] / wall[i]) + " on CPU" : "") : "";
      var o = el("option", "", threadLabel(P, i) + extra);
      o.value = String(i);
      sel.appendChild(o);
    }
    sel.addEventListener("change", guard(function () {
      state.thread = parseInt(sel.value, 10);
      recompute();
    }));
    lab.appendChild(sel);
    bar.appendChild(lab);
  }
  var mode = seg([["wall", "Wall clock"], ["cpu", "On CPU"]], "wall", function (v) {
    state.cpuOnly = v === "cpu";
    recompute();
  });
  mode.id = "mfp-mode";
  mode.title = "Wall clock: every sample. On CPU: only samples where the thread was running.";
  // a tracer does not know whether a thread ran: "On CPU" would be empty
  if (hasOnCpu(P) || !(P.meta.counts === "calls" || P.meta.weights === "self_time")) bar.appendChild(mode);

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
  rx.title = "Regular expression";
  rx.setAttribute("aria-pressed", "false");
  var share = el("span", "match-share");
  share.id = "mfp-match";
  share.setAttribute("aria-live", "polite");
  input.addEventListener("input", guard(function () { setQuery(input.value); }));
  rx.addEventListener("click", guard(function () {
    state.regex = !state.regex;
    rx.setAttribute("aria-pressed", String(state.regex));
    setQuery(input.value);
  }));
  search.appendChild(input);
  search.appendChild(rx);
  search.appendChild(share);
  bar.appendChild(search);
  ui.search = input;
  ui.share = share;

  var range = el("div", "range-badge");
  range.id = "mfp-range";
  range.hidden = true;
  ui.rangeText = el("span", "range-text");
  var clear = el("button", "btn small", "Clear range");
  clear.type = "button";
  clear.id = "mfp-range-clear";
  clear.addEventListener("click", guard(function () { setRange(null); }));
  range.appendChild(ui.rangeText);
  ui.rangeNote = el("span", "range-note", "no timed samples in this profile: the flame graph shows the whole run");
  ui.rangeNote.hidden = true;
  range.appendChild(ui.rangeNote);
  range.appendChild(clear);
  bar.appendChild(range);
  ui.range = range;
  return bar;
}

var PALETTE = ["#e8743b", "#3b82f6", "#10b981", "#a855f7", "#eab308", "#ec4899", "#14b8a6", "#64748b"];

function toUs(s) {
  var t = new Float64Array(s.t.length);
  for (var i = 0; i < t.length; i++) t[i] = s.t[i] * 1000;
  return t;
}

function nonZero(s) {
  for (var i = 0; i < s.v.length; i++) if (s.v[i] !== 0) return true;
  return false;
}

function activityBuckets(duration, intervalUs) {
  return Math.max(10, Math.min(400, Math.floor(duration / (intervalUs * 25))));
}

// Threads on CPU over time from SAMPLES, as a % of one core like cpu_pct.
// Buckets hold ~25 sampling intervals each so the line does not alias.
function activitySeries(P, duration, intervalUs) {
  var n = P.sampleT.length;
  if (!n) return null;
  var iv = intervalUs > 0 ? intervalUs : duration / n;
  var B = activityBuckets(duration, iv);
  var w = duration / B;
  var v = new Float64Array(B), t = new Float64Array(B);
  var any = false;
  for (var i = 0; i < n; i++) {
    if (!(P.sampleFlags[i] & 1)) continue;
    spread(v, w, P.sampleT[i] - P.sampleWeight[i], P.sampleT[i]);
    any = true;
  }
  if (!any) return null;
  for (i = 0; i < B; i++) {
    v[i] = (100 * v[i]) / w;
    t[i] = (i + 0.5) * w;
  }
  return { t: t, v: v };
}

function buildTimeline(P, duration) {
  var host = el("section", "panel tl-panel");
  host.id = "mfp-timeline";
  var title = el("div", "panel-head");
  title.appendChild(el("h2", "", "Timeline"));
  var hint = "drag across any chart to select a time range";
  if (P.meta.samples_decimation > 1) hint += " · samples kept: every " + P.meta.samples_decimation + "th, so ranges are coarser";
  title.appendChild(el("span", "hint", hint));
  host.appendChild(title);
  var body = el("div", "tl-body");
  host.appendChild(body);
  var tl = new Timeline(body, duration, { onRange: function (r) { setRange(r, true); } });
  var count = 0;
  function series(name, label, color, dash) {
    var s = seriesByName(P, name);
    if (!s || !s.v.length) return null;
    return { label: label, t: toUs(s), v: s.v, color: color, dash: !!dash, raw: s };
  }
  function nonZeroSeries(name, label, color) {
    var s = series(name, label, color);
    return s && nonZero(s) ? s : null;
  }
  function add(spec) {
    spec.series = spec.series.filter(function (s) { return s; });
    var solid = spec.series.filter(function (s) { return !s.dash; });
    if (!solid.length) return;
    if (spec.skipZero && !solid.some(function (s) { return nonZero(s); })) return;
    tl.addChart(spec);
    count++;
  }
  var act = activitySeries(P, duration, (P.meta.interval_ns || 0) / 1000);
  ui.cpuChartIndex = count;
  add({
    title: "CPU",
    series: [
      series("cpu_pct", "process", "#3b82f6"),
      act ? { label: "sampled threads", t: act.t, v: act.v, color: "#e8743b" } : null,
      nonZeroSeries("cpu_throttled_pct", "throttled", "#ef4444"),
    ],
    format: fmtUnit("%"),
    min: 100,
  });
  add({
    title: "Memory",
    series: [
      series("rss_bytes", "rss", "#10b981"),
      nonZeroSeries("children_rss_bytes", "children", "#f59e0b"),
      // the cgroup's usage includes page cache: it says something only
      // beside its limit, and without one it flattens the RSS line
      memoryLimit(P, pollerInfo(P.meta)) > 0 ? series("cgroup_mem_bytes", "cgroup", "#a855f7") : null,
      series("cgroup_mem_limit_bytes", "limit", "#ef4444", true),
    ],
    format: fmtBytes,
  });
  add({ title: "Disk", series: [series("disk_read_Bps", "read", "#0ea5e9"), series("disk_write_Bps", "write", "#f59e0b")], format: fmtUnit("B/s"), skipZero: true });
  add({ title: "Network", series: [series("net_recv_Bps", "recv", "#14b8a6"), series("net_sent_Bps", "sent", "#ec4899")], format: fmtUnit("B/s"), skipZero: true });
  var gpuUtil = [], gpuMem = [], k = 0;
  P.series.forEach(function (s) {
    var m = /^gpu(\d+)_util_pct$/.exec(s.name);
    if (m) gpuUtil.push(series(s.name, "gpu" + m[1], PALETTE[k++ % PALETTE.length]));
    m = /^gpu(\d+)_mem_bytes$/.exec(s.name);
    if (m) {
      var c = PALETTE[k++ % PALETTE.length];
      gpuMem.push(series(s.name, "gpu" + m[1], c));
      gpuMem.push(series("gpu" + m[1] + "_mem_total_bytes", "gpu" + m[1] + " total", c, true));
    }
  });
  if (gpuUtil.length) add({ title: "GPU", series: gpuUtil, format: fmtUnit("%"), min: 100 });
  if (gpuMem.length) add({ title: "GPU memory", series: gpuMem, format: fmtBytes });
  add({ title: "Threads", series: [series("threads", "threads", "#64748b")], format: function (v) { return fmtNum(v, 0); }, skipZero: true });
  if (!count) return null;
  ui.timeline = tl;
  return host;
}

function makeTabs(tabs) {
  var nav = el("nav", "tabs");
  nav.setAttribute("role", "tablist");
  ui.tabButtons = {};
  tabs.forEach(function (t) {
    var b = el("button", "tab", t[1]);
    b.type = "button";
    b.id = "mfp-tab-" + t[0];
    b.setAttribute("role", "tab");
    b.setAttribute("aria-selected", String(t[0] === state.tab));
    b.addEventListener("click", guard(function () { showTab(t[0]); }));
    ui.tabButtons[t[0]] = b;
    nav.appendChild(b);
  });
  return nav;
}

function showTab(name) {
  state.tab = name;
  Object.keys(ui.tabButtons).forEach(function (k) {
    ui.tabButtons[k].setAttribute("aria-selected", String(k === name));
    ui.panels[k].hidden = k !== name;
  });
  if (name === "flame") ui.flame.render();
  refreshVisible();
}

function breadcrumb(flame, nav) {
  nav.textContent = "";
  if (!flame.tree) return;
  var chain = flame.ancestors(flame.zoom);
  var items = chain, hidden = [];
  if (chain.length > 8 && !flame.crumbsOpen) {
    items = chain.slice(0, 2).concat([null]).concat(chain.slice(-4));
    hidden = chain.slice(2, -4);
  }
  items.forEach(function (node, i) {
    if (i > 0) nav.appendChild(el("span", "crumb-sep", "›"));
    if (node === null) {
      // the frames in between, one click away
      var gap = el("button", "crumb crumb-gap", "… " + hidden.length + " more");
      gap.type = "button";
      gap.title = hidden.map(function (n) { return flame.info.name(flame.tree.func[n]) || "<unknown>"; }).join(" › ");
      gap.addEventListener("click", guard(function () {
        flame.crumbsOpen = true;
        breadcrumb(flame, nav);
      }));
      nav.appendChild(gap);
      return;
    }
    var f = flame.tree.func[node];
    var b = el("button", "crumb", f < 0 ? flame.opts.rootLabel : flame.info.name(f) || "<unknown>");
    b.type = "button";
    if (node === flame.zoom) b.setAttribute("aria-current", "true");
    b.title = f < 0 ? "" : flame.info.label(f);
    b.addEventListener("click", guard(function () { flame.setZoom(node); }));
    nav.appendChild(b);
  });
  if (flame === ui.flame && ui.focus > 0 && flame.zoom === ui.focus) {
    var hint = el("span", "hint crumb-hint", "opened on the step function · Reset zoom shows the frames above");
    hint.id = "mfp-focus-hint";
    nav.appendChild(hint);
  }
}

// The node the CPU flame graph opens on: META "focus" names a function (the
// step function) and the card skips the framework frames above it. The
// heaviest outermost node of that function in the whole run; -1 if absent.
function focusNode(M, tree, name) {
  if (typeof name !== "string" || !name) return -1;
  var P = M.P, nf = P.funcName.length, want = new Uint8Array(nf), any = false, f;
  for (f = 0; f < nf; f++) {
    if (P.strings[P.funcName[f]] === name) want[f] = any = 1;
  }
  if (!any) {
    // a module-qualified name ("flow.TrainFlow.train") names it too
    var suffix = "." + name;
    for (f = 0; f < nf; f++) {
      var s = P.strings[P.funcName[f]];
      if (s && s.length > suffix.length && s.slice(-suffix.length) === suffix) want[f] = any = 1;
    }
  }
  if (!any) return -1;
  var best = -1;
  for (var fn = 1; fn < tree.n; fn++) {
    if (!want[tree.func[fn]] || !M.outer[fn] || !(tree.total[fn] > 0)) continue;
    if (best < 0 || tree.total[fn] > tree.total[best]) best = fn;
  }
  return best;
}

function flamePanel(id, opts) {
  var panel = el("section", "panel flame-panel");
  panel.id = id;
  var bar = el("div", "flame-bar");
  var crumbs = el("nav", "crumbs");
  crumbs.setAttribute("aria-label", "Zoom path");
  var reset = el("button", "btn small", "Reset zoom");
  reset.type = "button";
  bar.appendChild(crumbs);
  if (opts.extra) bar.appendChild(opts.extra);
  bar.appendChild(reset);
  panel.appendChild(bar);
  var host = el("div", "flame-host");
  panel.appendChild(host);
  var details = el("div", "details");
  details.hidden = true;
  panel.appendChild(details);
  var fg = new FlameGraph(host, ui.info, {
    format: opts.format,
    rootLabel: opts.rootLabel,
    ariaLabel: opts.aria,
    emptyText: opts.emptyText,
    onZoom: function (node) {
      breadcrumb(fg, crumbs);
      fillDetails(fg, details, opts.format);
      if (opts.onSelect) opts.onSelect(fg, node);
    },
  });
  reset.addEventListener("click", guard(function () { fg.setZoom(0); }));
  fg.crumbs = crumbs;
  fg.details = details;
  return { panel: panel, flame: fg };
}

function fillDetails(fg, box, fmt) {
  var node = fg.selected;
  box.textContent = "";
  if (node <= 0 || !fg.tree) {
    box.hidden = true;
    return;
  }
  var f = fg.tree.func[node], root = fg.tree.total[0] || 1;
  box.hidden = false;
  var left = el("div", "det-main");
  left.appendChild(el("span", "det-name", ui.info.name(f) || "<unknown>"));
  left.appendChild(el("span", "det-loc", ui.info.location(f)));
  box.appendChild(left);
  var nums = el("div", "det-nums");
  nums.appendChild(el("span", "", "total " + fmt(fg.tree.total[node]) + " (" + pct(fg.tree.total[node] / root) + ")"));
  nums.appendChild(el("span", "", "self " + fmt(fg.tree.self[node]) + " (" + pct(fg.tree.self[node] / root) + ")"));
  box.appendChild(nums);
  var copy = el("button", "btn small copy-btn", "Copy name");
  copy.type = "button";
  copy.addEventListener("click", guard(function () { copyText(ui.info.name(f)); }));
  box.appendChild(copy);
  if (ui.tabButtons.sandwich) {
    var sw = el("button", "btn small", "Sandwich");
    sw.type = "button";
    sw.addEventListener("click", guard(function () { selectFunc(f); showTab("sandwich"); }));
    box.appendChild(sw);
  }
}

function toast(text) {
  var t = document.getElementById("mfp-toast");
  if (!t) {
    t = el("div", "toast");
    t.id = "mfp-toast";
    t.setAttribute("role", "status");
    document.body.appendChild(t);
  }
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(function () { t.hidden = true; }, 1800);
}

// Copy without the clipboard permission an iframe usually lacks: a selected
// textarea and execCommand("copy") work under a user gesture; if that fails,
// leave the name selected in a field so Ctrl+C does it.
function copyText(text) {
  var ta = el("textarea", "copy-buffer");
  ta.value = text;
  ta.setAttribute("readonly", "");
  document.body.appendChild(ta);
  ta.select();
  var ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (e) {
    ok = false;
  }
  document.body.removeChild(ta);
  if (ok) {
    toast("Copied: " + text);
    return;
  }
  var box = document.getElementById("mfp-copy-manual");
  if (!box) {
    box = el("div", "copy-manual");
    box.id = "mfp-copy-manual";
    box.appendChild(el("span", "", "Press Ctrl+C / ⌘C to copy:"));
    var inp = el("input", "copy-field");
    inp.readOnly = true;
    box.appendChild(inp);
    document.body.appendChild(box);
    inp.addEventListener("blur", function () { box.hidden = true; });
  }
  var field = box.querySelector("input");
  field.value = text;
  box.hidden = false;
  field.focus();
  field.select();
}

function buildTable(hasMem) {
  var panel = el("section", "panel table-panel");
  panel.id = "mfp-panel-table";
  var bar = el("div", "flame-bar");
  var info = el("div", "table-info");
  bar.appendChild(info);
  if (hasMem) {
    var src = seg([["cpu", "Time"], ["mem", "Memory at peak"]], "cpu", function (v) {
      state.tableSource = v;
      renderTable();
    });
    src.id = "mfp-table-source";
    bar.appendChild(src);
  }
  panel.appendChild(bar);
  var wrap = el("div", "table-wrap");
  var table = el("table", "fn-table");
  table.id = "mfp-table";
  var thead = el("thead");
  var tr = el("tr");
  var cols = [["name", "Function"], ["loc", "Location"], ["self", "Self"], ["selfp", "Self %"], ["total", "Total"], ["totalp", "Total %"], ["count", ui.M.calls ? "Calls" : "Samples"]];
  ui.th = {};
  cols.forEach(function (c) {
    var th = el("th", c[0] === "name" || c[0] === "loc" ? "" : "num");
    var b = el("button", "th-btn", c[1]);
    b.type = "button";
    b.dataset.key = c[0];
    b.addEventListener("click", guard(function () {
      var key = c[0] === "selfp" ? "self" : c[0] === "totalp" ? "total" : c[0];
      if (state.sort.key === key) state.sort.desc = !state.sort.desc;
      else state.sort = { key: key, desc: key !== "name" && key !== "loc" };
      renderTable();
    }));
    th.appendChild(b);
    ui.th[c[0]] = th;
    tr.appendChild(th);
  });
  thead.appendChild(tr);
  table.appendChild(thead);
  ui.tbody = el("tbody");
  table.appendChild(ui.tbody);
  wrap.appendChild(table);
  panel.appendChild(wrap);
  ui.tableInfo = info;
  return panel;
}

var TABLE_ROWS = 300;

function renderTable() {
  var mem = state.tableSource === "mem" && ui.memTree;
  var tree = mem ? ui.memTree : state.cpuTree, info = ui.info;
  var fmt = mem ? fmtBytes : fmtUs;
  var ft = functionTotals(tree);
  var root = tree.total[0] || 1;
  var rows = [];
  for (var f = 0; f < ft.self.length; f++) {
    if (ft.total[f] <= 0) continue;
    if (state.match && !state.match[f]) continue;
    rows.push(f);
  }
  var key = state.sort.key, sign = state.sort.desc ? -1 : 1;
  var cmp;
  if (key === "name") cmp = function (a, b) { return sign * info.name(a).localeCompare(info.name(b)) || ft.total[b] - ft.total[a]; };
  else if (key === "loc") cmp = function (a, b) { return sign * info.location(a).localeCompare(info.location(b)) || ft.total[b] - ft.total[a]; };
  else {
    var col = key === "self" ? ft.self : key === "count" && ft.count ? ft.count : ft.total;
    cmp = function (a, b) { return sign * (col[a] - col[b]) || ft.total[b] - ft.total[a]; };
  }
  rows.sort(cmp);
  Object.keys(ui.th).forEach(function (k) {
    var kk = k === "selfp" ? "self" : k === "totalp" ? "total" : k;
    ui.th[k].setAttribute("aria-sort", kk === key && k !== "selfp" && k !== "totalp" ? (state.sort.desc ? "descending" : "ascending") : "none");
  });
  ui.tbody.textContent = "";
  var frag = document.createDocumentFragment();
  rows.slice(0, TABLE_ROWS).forEach(function (f) {
    var tr = el("tr");
    tr.dataset.func = String(f);
    if (f === state.selFunc) tr.className = "selected";
    tr.appendChild(el("td", "fn-name", info.name(f) || "<unknown>"));
    tr.appendChild(el("td", "fn-loc", info.location(f, true)));
    tr.appendChild(el("td", "num", fmt(ft.self[f])));
    var sp = el("td", "num bar-cell");
    sp.appendChild(el("span", "bar", ""));
    sp.firstChild.style.width = Math.min(100, (ft.self[f] / root) * 100).toFixed(1) + "%";
    sp.appendChild(el("span", "bar-text", pct(ft.self[f] / root)));
    tr.appendChild(sp);
    tr.appendChild(el("td", "num", fmt(ft.total[f])));
    var tp = el("td", "num bar-cell");
    tp.appendChild(el("span", "bar total", ""));
    tp.firstChild.style.width = Math.min(100, (ft.total[f] / root) * 100).toFixed(1) + "%";
    tp.appendChild(el("span", "bar-text", pct(ft.total[f] / root)));
    tr.appendChild(tp);
    tr.appendChild(el("td", "num", ft.count ? fmtCount(ft.count[f]) : ""));
    tr.title = info.label(f) + " — click for callers and callees";
    frag.appendChild(tr);
  });
  ui.tbody.appendChild(frag);
  ui.tbody.onclick = guard(function (e) {
    var tr = e.target.closest("tr");
    if (!tr || state.tableSource === "mem") return;
    selectFunc(parseInt(tr.dataset.func, 10));
    showTab("sandwich");
  });
  var shown = Math.min(rows.length, TABLE_ROWS);
  ui.tableInfo.textContent = rows.length + " functions" + (state.match ? " matching the search" : "") + (shown < rows.length ? ", top " + shown + " shown" : "") + (mem ? " · bytes live at the heap peak" : " · click a row for its callers and callees");
}

function buildSandwich() {
  var panel = el("section", "panel sandwich-panel");
  panel.id = "mfp-panel-sandwich";
  var head = el("div", "sw-head");
  ui.swTitle = el("div", "sw-title", "");
  head.appendChild(ui.swTitle);
  panel.appendChild(head);
  ui.swEmpty = el("div", "flame-empty", "Pick a function: click a box in the flame graph and press “Sandwich”, or click a row of Top functions.");
  panel.appendChild(ui.swEmpty);
  var body = el("div", "sw-body");
  var c1 = el("div", "sw-part");
  c1.appendChild(el("h3", "", "Callers"));
  c1.appendChild(el("div", "hint", "the function on top, who called it below"));
  var h1 = el("div", "flame-host");
  c1.appendChild(h1);
  var c2 = el("div", "sw-part");
  c2.appendChild(el("h3", "", "Callees"));
  c2.appendChild(el("div", "hint", "the function on top, what it called below"));
  var h2 = el("div", "flame-host");
  c2.appendChild(h2);
  body.appendChild(c1);
  body.appendChild(c2);
  panel.appendChild(body);
  ui.swBody = body;
  ui.callers = new FlameGraph(h1, ui.info, { format: fmtUs, ariaLabel: "callers", onSelect: function (n) { sandwichJump(ui.callers, n); } });
  ui.callees = new FlameGraph(h2, ui.info, { format: fmtUs, ariaLabel: "callees", onSelect: function (n) { sandwichJump(ui.callees, n); } });
  return panel;
}

function sandwichJump(fg, node) {
  var f = fg.tree.func[node];
  if (node > 0 && f >= 0) selectFunc(f);
}

// The selected function's time on the stack, drawn on the CPU chart.
function updateActivity() {
  var tl = ui.timeline;
  if (!tl || ui.cpuChartIndex === undefined || !ui.P.sampleT.length) return;
  var chart = tl.charts[ui.cpuChartIndex];
  if (!chart || chart.spec.title !== "CPU") return;
  var f = state.selFunc;
  var key = f + ":" + state.thread + ":" + state.cpuOnly;
  if (key === ui.activityKey) return; // a range change leaves it as it is
  ui.activityKey = key;
  if (f < 0) {
    tl.setExtra(chart, null);
    return;
  }
  var iv = (ui.P.meta.interval_ns || 0) / 1000 || ui.duration / ui.P.sampleT.length;
  var a = functionActivity(ui.M, f, { thread: state.thread, cpuOnly: state.cpuOnly }, ui.duration, activityBuckets(ui.duration, iv));
  var name = ui.info.name(f) || "<unknown>";
  if (name.length > 40) name = name.slice(0, 39) + "\u2026";
  tl.setExtra(chart, { label: name, t: a.t, v: a.v, color: "#d946ef" });
}

function selectFunc(f) {
  if (f !== state.selFunc) {
    state.selFunc = f;
    updateActivity();
  }
  if (state.tab === "sandwich") renderSandwich();
  else ui.dirtySandwich = true;
}

function renderSandwich() {
  var f = state.selFunc;
  ui.swTitle.textContent = "";
  if (f < 0) {
    ui.swEmpty.hidden = false;
    ui.swBody.hidden = true;
    return;
  }
  ui.swEmpty.hidden = true;
  ui.swBody.hidden = false;
  var tree = state.cpuTree;
  var ft = functionTotals(tree);
  var root = tree.total[0] || 1;
  ui.swTitle.appendChild(el("span", "det-name", ui.info.name(f) || "<unknown>"));
  ui.swTitle.appendChild(el("span", "det-loc", ui.info.location(f)));
  ui.swTitle.appendChild(el("span", "det-nums", "self " + fmtUs(ft.self[f]) + " (" + pct(ft.self[f] / root) + ") · total " + fmtUs(ft.total[f]) + " (" + pct(ft.total[f] / root) + ")"));
  var copy = el("button", "btn small copy-btn", "Copy name");
  copy.type = "button";
  copy.addEventListener("click", guard(function () { copyText(ui.info.name(f)); }));
  ui.swTitle.appendChild(copy);
  ui.callers.setTree(callersTree(tree, f));
  ui.callees.setTree(calleesTree(tree, f));
  ui.callers.setMatch(state.match);
  ui.callees.setMatch(state.match);
}

function stackThread() {
  if (state.thread >= 0) return state.thread;
  var P = ui.P;
  for (var i = 0; i < P.threadFlags.length; i++) if (P.threadFlags[i] & 1) return i;
  return 0;
}

function buildStackChart() {
  var panel = el("section", "panel stack-panel");
  panel.id = "mfp-panel-stack";
  var head = el("div", "flame-bar");
  ui.stackTitle = el("div", "stack-title");
  head.appendChild(ui.stackTitle);
  ui.stackFocus = true;
  ui.stackFocusSeg = seg([["focus", "From the step"], ["all", "Whole stack"]], "focus", function (v) {
    ui.stackFocus = v === "focus";
    renderStackChart();
  });
  ui.stackFocusSeg.id = "mfp-stack-focus";
  ui.stackFocusSeg.hidden = true;
  head.appendChild(ui.stackFocusSeg);
  panel.appendChild(head);
  var host = el("div", "flame-host");
  panel.appendChild(host);
  ui.stack = new StackChart(host, ui.info, {
    onSelect: function (f) {
      selectFunc(f);
    },
    onRange: function (r) {
      setRange(r);
    },
  });
  return panel;
}

function renderStackChart() {
  var th = stackThread();
  ui.stackTitle.textContent = "";
  ui.stackTitle.appendChild(el("span", "det-name", threadLabel(ui.P, th)));
  var what = state.range ? fmtUs(state.range[0]) + " – " + fmtUs(state.range[1]) : "the whole run";
  var hint = "time order, " + what + (state.thread < 0 ? " · pick another thread above" : "") + " · drag here or on the timeline to zoom in time";
  ui.stackTitle.appendChild(el("span", "hint", hint));
  var skip = null;
  if (ui.focus > 0) {
    ui.stackFocusSeg.hidden = false;
    ui.stackFocusSeg.firstChild.textContent = "From " + (ui.info.name(ui.M.func[ui.focus]) || "the step");
    if (ui.stackFocus) {
      skip = [];
      for (var fn = ui.M.parent[ui.focus]; fn > 0; fn = ui.M.parent[fn]) skip.push(fn);
      skip.reverse();
    }
  }
  ui.stack.skip = skip;
  ui.stack.set(ui.M, th, state.range, ui.duration, state.cpuOnly);
  ui.stack.setMatch(state.match);
}

function buildMemory() {
  var extra = seg([["live", "Live at peak"], ["alloc", "Allocated"]], "live", function (v) {
    state.memWhich = v;
    ui.memTree = aggregateMemory(ui.M, v);
    ui.memFlame.setTree(ui.memTree, true);
    ui.dirtyTable = true;
    updateShare();
  });
  extra.id = "mfp-mem-mode";
  var p = flamePanel("mfp-panel-memory", { format: fmtBytes, rootLabel: "all memory", aria: "memory flame graph", extra: extra });
  ui.memFlame = p.flame;
  return p.panel;
}

function compileQuery(q, regex) {
  if (!q) return null;
  if (regex) {
    try {
      return new RegExp(q, "i");
    } catch (e) {
      return { error: e.message };
    }
  }
  var low = q.toLowerCase();
  return { test: function (s) { return s.toLowerCase().indexOf(low) >= 0; } };
}

function setQuery(q) {
  state.query = q;
  var m = compileQuery(q, state.regex);
  ui.search.classList.toggle("invalid", !!(m && m.error));
  if (!m || m.error) {
    state.match = null;
    if (m && m.error) ui.share.textContent = "invalid regex";
  } else {
    var info = ui.info, n = ui.P.funcName.length, match = new Uint8Array(n);
    for (var f = 0; f < n; f++) {
      var name = info.name(f), loc = info.location(f);
      if (m.test(name) || (loc && m.test(loc))) match[f] = 1;
      if (m.lastIndex) m.lastIndex = 0;
    }
    state.match = match;
  }
  ui.flame.setMatch(state.match);
  if (ui.memFlame) ui.memFlame.setMatch(state.match);
  if (state.tab === "table") renderTable();
  else ui.dirtyTable = true;
  if (state.tab === "sandwich" && state.selFunc >= 0) {
    ui.callers.setMatch(state.match);
    ui.callees.setMatch(state.match);
  }
  if (ui.stack) ui.stack.setMatch(state.match);
  updateShare();
}

function updateShare() {
  if (!state.match) {
    if (!(state.query && state.regex)) ui.share.textContent = "";
    return;
  }
  var mem = state.tab === "memory" && ui.memTree;
  var tree = mem ? ui.memTree : state.cpuTree;
  var root = tree.total[0];
  var w = matchedWeight(tree, state.match);
  var nf = 0;
  for (var f = 0; f < state.match.length; f++) nf += state.match[f];
  ui.share.textContent = nf ? "matched " + pct(root > 0 ? w / root : 0) + (mem ? " of memory" : " of time") + " · " + nf + " function" + (nf === 1 ? "" : "s") : "no match";
  ui.share.dataset.share = root > 0 ? String(w / root) : "0";
}

function setRange(r, fromTimeline) {
  state.range = r && r[1] > r[0] ? r : null;
  if (!fromTimeline && ui.timeline) ui.timeline.setRange(state.range ? state.range[0] : null, state.range ? state.range[1] : null, true);
  ui.range.hidden = !state.range;
  if (state.range) ui.rangeText.textContent = "Range " + fmtUs(state.range[0]) + " – " + fmtUs(state.range[1]) + " (" + fmtUs(state.range[1] - state.range[0]) + ")";
  recompute();
}

function recompute() {
  var t0 = performance.now();
  // Without timed samples (e.g. a converted cProfile run) a range cannot
  // narrow the flame graph: it keeps showing the whole run and says so.
  var timed = ui.P.sampleT.length > 0;
  var range = timed ? state.range : null;
  state.cpuTree = aggregateCpu(ui.M, { thread: state.thread, cpuOnly: state.cpuOnly, range: range });
  if (ui.rangeNote) ui.rangeNote.hidden = !(state.range && !timed);
  timings.aggregate = performance.now() - t0;
  ui.flame.setTree(state.cpuTree, true);
  timings.layout = ui.flame.layoutMs;
  timings.draw = ui.flame.drawMs;
  breadcrumb(ui.flame, ui.flame.crumbs);
  fillDetails(ui.flame, ui.flame.details, fmtUs);
  ui.dirtyTable = true;
  ui.dirtySandwich = true;
  ui.dirtyStack = true;
  refreshVisible();
  updateShare();
  timings.lastRecompute = performance.now() - t0;
  updateActivity();
  return timings.lastRecompute;
}

function refreshVisible() {
  if (state.tab === "table" && ui.dirtyTable) {
    renderTable();
    ui.dirtyTable = false;
  }
  if (state.tab === "sandwich" && ui.dirtySandwich) {
    renderSandwich();
    ui.dirtySandwich = false;
  }
  if (state.tab === "stack" && ui.dirtyStack) {
    renderStackChart();
    ui.dirtyStack = false;
  }
  if (state.tab === "memory" && ui.memFlame) ui.memFlame.render();
  updateShare();
}

function activeFlame() {
  if (state.tab === "memory") return ui.memFlame;
  if (state.tab === "flame") return ui.flame;
  return null;
}

function onKey(e) {
  var tag = e.target && e.target.tagName;
  var typing = tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  if (e.key === "Escape") {
    if (state.query || document.activeElement === ui.search) {
      ui.search.value = "";
      setQuery("");
      ui.search.blur();
    } else {
      var fg = activeFlame();
      if (fg && fg.zoom > 0) fg.setZoom(0);
      else if (state.range) setRange(null);
    }
    e.preventDefault();
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/") {
    e.preventDefault();
    ui.search.focus();
    ui.search.select();
  } else if (e.key === "+" || e.key === "=") {
    var a = activeFlame();
    if (a) a.zoomIn();
  } else if (e.key === "-" || e.key === "_") {
    var b = activeFlame();
    if (b) b.zoomOut();
  } else if (e.key === "c") {
    var fg = activeFlame();
    var node = fg ? (fg.hover > 0 ? fg.hover : fg.selected) : -1;
    if (node > 0 && fg.tree.func[node] >= 0) copyText(ui.info.name(fg.tree.func[node]));
  }
}

function renderCard(P, M, title, extraError) {
  var root = document.getElementById("mfp-root");
  root.textContent = "";
  var meta = P.meta;
  ui.P = P;
  ui.M = M;
  ui.info = new FuncInfo(P);
  var lastSample = P.sampleT.length ? P.sampleT[P.sampleT.length - 1] : 0;
  var lastPoint = 0;
  P.series.forEach(function (s) { if (s.t.length) lastPoint = Math.max(lastPoint, s.t[s.t.length - 1] * 1000); });
  var duration = typeof meta.duration_ns === "number" && meta.duration_ns > 0 ? meta.duration_ns / 1000 : Math.max(lastSample, lastPoint);
  ui.duration = duration;
  root.appendChild(header(title || (typeof meta.title === "string" && meta.title) || "Profile", meta));
  if (meta.step_failed) {
    var se = metaError(meta.step_error) || { type: "", message: "" };
    var banner = errorBlock("banner-failed", "Step failed", se);
    banner.id = "mfp-step-failed";
    root.appendChild(banner);
  }
  var perr = metaError(meta.error);
  if (perr) {
    var w = errorBlock("warn-card", "The profiler reported a problem", perr);
    w.id = "mfp-profiler-error";
    root.appendChild(w);
  }
  if (extraError) {
    var w2 = errorBlock("warn-card", "Card note", { type: "", message: extraError });
    root.appendChild(w2);
  }
  var split = splitNotes(meta);
  if (split.loud.length) {
    var notes = el("ul", "notes");
    notes.id = "mfp-notes";
    split.loud.forEach(function (n) { notes.appendChild(el("li", "", n)); });
    root.appendChild(notes);
  }
  var stats = buildStats(P, meta, duration);
  if (stats.children.length) root.appendChild(stats);
  root.appendChild(buildAbout(P, meta, duration, split.quiet));
  root.appendChild(buildControls(P));
  var tl = buildTimeline(P, duration);
  if (tl) root.appendChild(tl);

  var tabs = [["flame", "CPU flame graph"]];
  var hasSamples = P.sampleT.length > 0;
  if (hasSamples) tabs.push(["stack", "Stack chart"]);
  tabs.push(["table", "Top functions"], ["sandwich", "Sandwich"]);
  var hasMem = P.memStack.length > 0;
  if (hasMem) tabs.push(["memory", "Memory at peak"]);
  var main = el("section", "views");
  main.appendChild(makeTabs(tabs));
  var fp = flamePanel("mfp-panel-flame", {
    format: fmtUs,
    rootLabel: "all",
    aria: "CPU flame graph",
    emptyText: ui.M.calls ? "No calls recorded in this view." : "No samples in this view.",
    onSelect: function (fg, node) {
      var f = node > 0 ? fg.tree.func[node] : -1;
      selectFunc(f);
    },
  });
  ui.flame = fp.flame;
  ui.panels = { flame: fp.panel, table: buildTable(hasMem), sandwich: buildSandwich() };
  if (hasSamples) ui.panels.stack = buildStackChart();
  if (hasMem) ui.panels.memory = buildMemory();
  Object.keys(ui.panels).forEach(function (k) {
    ui.panels[k].hidden = k !== state.tab;
    main.appendChild(ui.panels[k]);
  });
  root.appendChild(main);
  var foot = el("footer", "card-foot", "Keys: / search · Esc clear · + zoom in · − zoom out · c copy name · drag on a chart to select a range");
  root.appendChild(foot);

  state.cpuTree = aggregateCpu(M, { thread: -1, cpuOnly: false, range: null });
  ui.focus = focusNode(M, state.cpuTree, meta.focus);
  ui.flame.zoom = ui.focus > 0 ? ui.focus : 0;
  ui.flame.setTree(state.cpuTree, true);
  breadcrumb(ui.flame, ui.flame.crumbs);
  ui.dirtyTable = true;
  ui.dirtySandwich = true;
  ui.dirtyStack = true;
  if (hasMem) {
    ui.memTree = aggregateMemory(M, "live");
    ui.memFlame.setTree(ui.memTree);
    breadcrumb(ui.memFlame, ui.memFlame.crumbs);
  }
  if (ui.timeline) ui.timeline.render();
  document.addEventListener("keydown", guard(onKey));
  if (window.matchMedia) {
    var mq = window.matchMedia("(prefers-color-scheme: dark)");
    var redraw = guard(function () {
      ui.flame.draw();
      if (ui.memFlame) ui.memFlame.draw();
      if (ui.timeline) ui.timeline.render();
    });
    if (mq.addEventListener) mq.addEventListener("change", redraw);
  }
  ready({ error: false });
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

function ready(info) {
  requestAnimationFrame(function () {
    timings.firstPaint = performance.now();
    window.__mfp.ready = true;
    window.__mfp.error = info.error;
    document.documentElement.dataset.mfpReady = info.error ? "error" : "ok";
  });
}

window.__mfp = {
  ready: false,
  timings: timings,
  state: function () {
    return {
      thread: state.thread,
      cpuOnly: state.cpuOnly,
      range: state.range,
      query: state.query,
      tab: state.tab,
      selFunc: state.selFunc,
      zoom: ui.flame ? ui.flame.zoom : 0,
      zoomName: ui.flame && ui.flame.zoom > 0 ? ui.info.name(ui.flame.tree.func[ui.flame.zoom]) : "",
      rootTotal: state.cpuTree ? state.cpuTree.total[0] : 0,
      visibleBoxes: ui.flame && ui.flame.rects ? ui.flame.rects.n.length : 0,
    };
  },
  // test and bench hooks: the same paths the mouse takes
  selectRange: function (a, b) {
    var t0 = performance.now();
    setRange(a === null ? null : [a, b]);
    return performance.now() - t0;
  },
  sandwichNames: function () {
    var names = function (fg) {
      if (!fg || !fg.rects) return [];
      return fg.rects.n.map(function (n) { var f = fg.tree.func[n]; return f < 0 ? "" : ui.info.name(f); });
    };
    return { callers: names(ui.callers), callees: names(ui.callees) };
  },
  duration: function () {
    return ui.duration || 0;
  },
  stackBoxes: function () {
    if (!ui.stack || !ui.stack.boxes) return [];
    return ui.stack.boxes.map(function (b) { return { name: ui.info.name(b.func), x0: b.x0, x1: b.x1, depth: b.d }; });
  },
  memoryTotal: function () {
    return ui.memTree ? ui.memTree.total[0] : 0;
  },
  boxes: function () {
    if (!ui.flame || !ui.flame.rects) return [];
    var R = ui.flame.rects, out = [];
    for (var i = 0; i < R.n.length; i++) {
      var f = ui.flame.tree.func[R.n[i]];
      out.push({ name: f < 0 ? "" : ui.info.name(f), x: R.x[i], w: R.w[i], depth: R.d[i], total: ui.flame.tree.total[R.n[i]] });
    }
    return out;
  },
};

async function boot() {
  problemHook = showProblem;
  setupHeight();
  var title = readJson("mfp-title") || "";
  var extraError = readJson("mfp-error");
  var dataNode = document.getElementById("mfp-data");
  var payload = dataNode ? dataNode.textContent.trim() : "";
  if (!payload) {
    showErrorCard(title, extraError || "This card has no profile data.", null, null);
    return;
  }
  var P, M;
  try {
    var bytes;
    try {
      bytes = base64ToBytes(payload);
    } catch (e) {
      throw new ProfileError("the embedded data is not valid base64");
    }
    var raw = await inflate(bytes);
    timings.inflated = performance.now();
    P = parseProfile(raw);
    timings.parsed = performance.now();
    M = buildModel(P);
    timings.model = performance.now();
  } catch (e) {
    showErrorCard(title, "The profile in this card could not be read: " + (e && e.message ? e.message : String(e)), null, extraError);
    return;
  }
  try {
    renderCard(P, M, title, extraError);
    timings.rendered = performance.now();
  } catch (e) {
    showErrorCard(title, "The card could not be drawn: " + (e && e.message ? e.message : String(e)), null, extraError);
  }
}

boot().catch(function (e) {
  try {
    showErrorCard("", "The card failed to start: " + (e && e.message ? e.message : String(e)), null, null);
  } catch (e2) {
    /* nothing left to show it with */
  }
});
