// summary.js — what the metadata says, as data for the stat cards and
// "About this profile" (the panels only lay it out).
//
// Reads META keys and TIMELINE series of docs/FORMAT.md. Every figure that
// META gives exactly (the poller's peaks, averages and totals over every
// poll) wins over one read off the possibly thinned series.

import { pct, fmtUs, fmtBytes, fmtCount, fmtNum, objectOr, finite } from "./util.js";
import { SAMPLE_ON_CPU, THREAD_MAIN } from "./constants.js";

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

// META "timeline": the poller's exact peaks, averages and totals over every
// poll; "limits": what the process may use.
function pollerInfo(meta) {
  var t = objectOr(meta.timeline);
  return { peaks: objectOr(t.peaks), averages: objectOr(t.averages), totals: objectOr(t.totals), limits: objectOr(meta.limits) };
}

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
function memoryLimit(P, meta) {
  var l = finite(pollerInfo(meta).limits.memory_limit_bytes);
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

// The step's peak RSS: META rss (the kernel's peak of the profiled span,
// or a lower bound when the process peaked before the start), else the
// poller's exact peak, else the series'.
function peakRss(P, meta) {
  var r = objectOr(meta.rss), fig = figures(P, pollerInfo(meta), "rss_bytes");
  var bytes = finite(r.peak_bytes);
  if (bytes === null || !(bytes > 0)) bytes = fig && fig.peak > 0 ? fig.peak : 0;
  if (!(bytes > 0)) return null;
  return { bytes: bytes, atLeast: r.peak_source === "polled", avg: fig ? fig.avg : 0, children: finite(r.children_peak_bytes) || 0 };
}

// Whose cgroup figures are: META limits.cgroup_scope (issue 13).
function cgroupWhose(meta) {
  var scope = objectOr(meta.limits).cgroup_scope;
  return scope === "container" ? "the container's cgroup (shared with other processes)" : scope === "step" ? "the step's cgroup" : "this cgroup";
}

// Disk and network totals and peaks. With META network, the sock_* series
// are the process's own TCP traffic (the step's) and net_* the whole
// network namespace's (not the step's: step = false).
function ioFigures(P, meta) {
  var info = pollerInfo(meta), net = objectOr(meta.network);
  var nsOnly = net.net_scope === "namespace";
  var rows = [
    ["disk_read_Bps", "disk_read_bytes", "Disk read", "read", "disk_read", true],
    ["disk_write_Bps", "disk_write_bytes", "Disk written", "written", "disk_write", true],
    ["sock_recv_Bps", "sock_recv_bytes", "Net received", "received", "net_recv", true],
    ["sock_sent_Bps", "sock_sent_bytes", "Net sent", "sent", "net_sent", true],
    ["net_recv_Bps", "net_recv_bytes", nsOnly ? "Namespace received" : "Net received", "received", nsOnly ? "ns_recv" : "net_recv", !nsOnly],
    ["net_sent_Bps", "net_sent_bytes", nsOnly ? "Namespace sent" : "Net sent", "sent", nsOnly ? "ns_sent" : "net_sent", !nsOnly],
  ];
  var out = [];
  rows.forEach(function (d) {
    var s = figures(P, info, d[0]);
    var total = finite(info.totals[d[1]]);
    if (total === null) total = rateTotal(seriesByName(P, d[0]));
    if (!(total > 0) && !(s && s.peak > 0)) return;
    out.push({ series: d[0], label: d[2], what: d[3], key: d[4], step: d[5], total: total, peak: s ? s.peak : 0 });
  });
  return out;
}

function isCalls(meta) {
  return meta.counts === "calls";
}

function hasOnCpu(P) {
  for (var k = 0; k < P.totFlags.length; k++) if (P.totFlags[k] & SAMPLE_ON_CPU) return true;
  return false;
}

function dropReasons(meta) {
  var reasons = [], r = objectOr(meta.drop_reasons);
  Object.keys(r).forEach(function (k) { if (r[k]) reasons.push(k + " " + fmtCount(r[k])); });
  return reasons.join(", ");
}

// [{key, label, value, sub, alert}] for the stat grid, only meaningful ones.
function statCards(P, meta, duration) {
  var out = [];
  var card = function (label, value, sub, key, alert) {
    out.push({ key: key, label: label, value: value, sub: sub || "", alert: !!alert });
  };
  var info = pollerInfo(meta), limits = info.limits;
  if (duration > 0) card("Duration", fmtUs(duration), null, "duration");
  var recorded = 0;
  for (var i = 0; i < P.totCount.length; i++) recorded += P.totCount[i];
  if (isCalls(meta)) {
    var calls = finite(meta.calls_traced) || recorded;
    if (calls > 0) card("Calls", fmtCount(calls), "every call timed", "samples");
  } else {
    var taken = finite(meta.samples_taken) || recorded;
    if (taken > 0) card("Samples", fmtCount(taken), meta.interval_ns > 0 ? "every " + fmtUs(meta.interval_ns / 1000) : null, "samples");
  }
  var cpu = figures(P, info, "cpu_pct");
  if (cpu && cpu.peak > 0) {
    var cap = cpuCapacity(limits);
    card("Peak CPU", fmtNum(cpu.peak) + "%", "avg " + fmtNum(cpu.avg) + "%" + (cap ? " " + cap : ""), "cpu");
  }
  var thr = figures(P, info, "cpu_throttled_pct");
  if ((thr && thr.peak > 0) || limits.cpu_throttled_s > 0) {
    card("CPU throttled", thr && thr.peak > 0 ? fmtNum(thr.peak) + "%" : fmtUs(limits.cpu_throttled_s * 1e6),
      limits.cpu_throttled_s > 0 ? "total " + fmtUs(limits.cpu_throttled_s * 1e6) : "peak", "throttled", true);
  }
  var oom = figures(P, info, "cgroup_oom_kills");
  var ooms = Math.max(oom ? oom.peak : 0, limits.oom_kills > 0 ? limits.oom_kills : 0);
  if (ooms > 0) card("OOM kills", fmtNum(ooms, 0), "in " + cgroupWhose(meta), "oom", true);
  var peak = peakRss(P, meta);
  var memLimit = memoryLimit(P, meta);
  if (peak) {
    var sub = [];
    if (peak.atLeast) sub.push("at least: the process peaked higher before the start");
    if (memLimit > 0) sub.push("of a " + fmtBytes(memLimit) + " limit (" + pct(peak.bytes / memLimit) + ")");
    else if (peak.avg > 0) sub.push("avg " + fmtBytes(peak.avg));
    if (peak.children > 0) sub.push("children " + fmtBytes(peak.children));
    card("Peak RSS", (peak.atLeast ? "≥ " : "") + fmtBytes(peak.bytes), sub.join(" · "), "rss", memLimit > 0 && peak.bytes / memLimit >= 0.9);
  } else if (memLimit > 0) {
    card("Memory limit", fmtBytes(memLimit), "cgroup", "memlimit");
  }
  ioFigures(P, meta).forEach(function (d) {
    if (!d.step) return; // the namespace's traffic is not the step's: About says it
    card(d.label, fmtBytes(d.total), d.peak > 0 ? "peak " + fmtBytes(d.peak) + "/s" : d.what + " in total", d.key);
  });
  P.series.forEach(function (s) {
    var m = /^gpu(\d+)_util_pct$/.exec(s.name);
    if (m) {
      var g = figures(P, info, s.name);
      if (g && g.peak > 0) card("GPU " + m[1] + " util", fmtNum(g.peak) + "%", "avg " + fmtNum(g.avg) + "%", "gpu" + m[1] + "_util");
    }
    m = /^gpu(\d+)_mem_bytes$/.exec(s.name);
    if (m) {
      var gm = figures(P, info, s.name);
      var tot = peakAvg(seriesByName(P, "gpu" + m[1] + "_mem_total_bytes"));
      if (gm && gm.peak > 0) card("GPU " + m[1] + " memory", fmtBytes(gm.peak), tot && tot.peak > 0 ? "of " + fmtBytes(tot.peak) : "peak", "gpu" + m[1] + "_mem");
    }
  });
  var ths = figures(P, info, "threads");
  var nthreads = P.threadTid.length;
  if (ths && ths.peak > 0) card("Threads", fmtNum(ths.peak, 0), "peak", "threads");
  else if (nthreads > 1) card("Threads", String(nthreads), isCalls(meta) ? "traced" : "sampled", "threads");
  if (meta.samples_dropped > 0) card("Dropped samples", fmtCount(meta.samples_dropped), dropReasons(meta) || null, "dropped");
  return out;
}

// Notes about what the machine lacks (no GPU library, a cgroup file that is
// not there) say the same on every card from it: they go in About, quietly.
// Everything else (memory at peak, a cut call tree, a slow sampler) stays
// on top.
var QUIET_NOTE = /^(GPU\b|cgroup:|disk:|network:|process:|child processes:)/;

// A live card's own notes (META "live", plugins/live.py) make its banner.
var LIVE_NOTE = /^Live card: /;

function splitNotes(meta) {
  var loud = [], quiet = [], live = [];
  var isLive = meta.live && typeof meta.live === "object";
  if (Array.isArray(meta.notes)) {
    meta.notes.forEach(function (n) {
      var text = typeof n === "string" ? n : JSON.stringify(n);
      if (isLive && LIVE_NOTE.test(text)) live.push(text.replace(LIVE_NOTE, ""));
      else (QUIET_NOTE.test(text) ? quiet : loud).push(text);
    });
  }
  return { loud: loud, quiet: quiet, live: live };
}

// "About this profile": {rows: [[label, text]], gist: [short bits]}.
function aboutRows(P, meta, duration, quietNotes) {
  var gist = [], rows = [];
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
  if (limits.cgroup_memory_peak_bytes > 0) mach.push("cgroup memory peak " + fmtBytes(limits.cgroup_memory_peak_bytes) + " (" + cgroupWhose(meta) + ", since it was created)");
  if (limits.cgroup) mach.push("cgroup " + limits.cgroup);
  if (mach.length) rows.push(["Machine", mach.join(" · ")]);
  var ns = ioFigures(P, meta).filter(function (d) { return !d.step; });
  if (ns.length) {
    rows.push(["Network namespace", ns.map(function (d) { return d.what + " " + fmtBytes(d.total); }).join(" · ") +
      " — every process in the namespace (on a host network, the machine), not only this step"]);
  }
  var r = objectOr(meta.rss);
  if (finite(r.peak_bytes)) {
    var how = r.peak_source === "kernel" ? "the kernel's peak (VmHWM) for the profiled span" : "the largest RSS polled (a lower bound: the process had peaked higher before the start)";
    rows.push(["Peak RSS", fmtBytes(r.peak_bytes) + ": " + how + (finite(r.children_peak_bytes) ? " · children " + fmtBytes(r.children_peak_bytes) : "")]);
  }
  if (meta.start_unix_ns) {
    var d = new Date(meta.start_unix_ns / 1e6);
    if (!isNaN(d.getTime())) rows.push(["Started", d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC")]);
  }
  if (typeof meta.focus === "string" && meta.focus) rows.push(["Opens on", meta.focus]);
  if (quietNotes.length) gist.push(quietNotes.length + " environment note" + (quietNotes.length === 1 ? "" : "s"));
  return { rows: rows, gist: gist };
}

function threadLabel(P, i) {
  var name = P.strings[P.threadName[i]] || "thread";
  var s = name + " (" + P.threadTid[i] + ")";
  if (P.threadFlags[i] & THREAD_MAIN) s += " · main";
  return s;
}

// The thread a single-thread view shows when none is picked: the main one.
function mainThread(P) {
  for (var i = 0; i < P.threadFlags.length; i++) if (P.threadFlags[i] & THREAD_MAIN) return i;
  return 0;
}

function metaError(v) {
  if (!v) return null;
  if (typeof v === "string") return { type: "", message: v };
  if (typeof v === "object") {
    return { type: String(v.type || ""), message: String(v.message || ""), traceback: v.traceback ? String(v.traceback) : "" };
  }
  return { type: "", message: String(v) };
}

export {
  seriesByName, peakAvg, pollerInfo, figures, memoryLimit, peakRss, cgroupWhose, ioFigures, isCalls, hasOnCpu, statCards, splitNotes, aboutRows,
  metaError, threadLabel, mainThread,
};
