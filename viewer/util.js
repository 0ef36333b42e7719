// util.js — formatting, and the guard every event handler goes through.
//
// An exception inside a handler must never escape to the page (the card
// promises no uncaught errors): guard() catches it and hands it to the
// problem hook, which shows it on the card as a warning, so the rest of the
// card keeps working.

var problemHook = null;

function setProblemHook(fn) {
  problemHook = fn;
}

function guard(fn) {
  return function () {
    try {
      return fn.apply(this, arguments);
    } catch (e) {
      if (problemHook) problemHook(e);
    }
  };
}

function pct(x) {
  if (!isFinite(x)) return "–";
  var v = x * 100;
  if (v === 0) return "0%";
  if (v < 0.1) return "<0.1%";
  return (v >= 10 ? v.toFixed(1) : v.toFixed(2)) + "%";
}

function fmtUs(us) {
  if (!isFinite(us)) return "–";
  if (us === 0) return "0";
  var a = Math.abs(us);
  if (a >= 3600e6) return (us / 3600e6).toFixed(2) + " h";
  if (a >= 60e6) return (us / 60e6).toFixed(2) + " min";
  if (a >= 1e6) return (us / 1e6).toFixed(a >= 100e6 ? 1 : 2) + " s";
  if (a >= 1e3) return (us / 1e3).toFixed(a >= 100e3 ? 0 : 1) + " ms";
  return us.toFixed(0) + " µs";
}

// Powers of 1024, so the units say so: KiB, MiB, GiB (a "MB" that is 2^20
// bytes makes a right-sized memory request 5 % too small).
var BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

function fmtBytes(b) {
  if (!isFinite(b)) return "–";
  var a = Math.abs(b), i = 0;
  while (a >= 1024 && i < BYTE_UNITS.length - 1) {
    a /= 1024;
    b /= 1024;
    i++;
  }
  return (i === 0 ? b.toFixed(0) : b.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2)) + " " + BYTE_UNITS[i];
}

// Not toLocaleString: its first call loads locale data (~15 ms).
function fmtCount(n) {
  if (!isFinite(n)) return "–";
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function fmtNum(v, digits) {
  if (!isFinite(v)) return "–";
  return v.toFixed(digits === undefined ? (Math.abs(v) >= 100 ? 0 : 1) : digits);
}

function fmtUnit(unit) {
  if (unit === "B") return fmtBytes;
  if (unit === "B/s") return function (v) { return fmtBytes(v) + "/s"; };
  if (unit === "%") return function (v) { return fmtNum(v) + "%"; };
  return function (v) { return fmtNum(v) + (unit ? " " + unit : ""); };
}

function objectOr(v) {
  return v && typeof v === "object" && !Array.isArray(v) ? v : {};
}

function finite(v) {
  return typeof v === "number" && isFinite(v) ? v : null;
}

function lowerBound(arr, x) {
  var lo = 0, hi = arr.length;
  while (lo < hi) {
    var mid = (lo + hi) >>> 1;
    if (arr[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export { setProblemHook, guard, pct, fmtUs, fmtBytes, fmtCount, fmtNum, fmtUnit, objectOr, finite, lowerBound };
