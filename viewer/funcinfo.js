// funcinfo.js — names, locations, labels and colours of functions, shared
// by every widget (computed once per function, on first use).

import { FUNC_NATIVE, FUNC_THREAD, FUNC_SYNTHETIC } from "./constants.js";

function hashString(s) {
  var h = 2166136261;
  for (var i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

function shortFile(file) {
  if (!file) return "";
  var parts = file.split(/[\\/]/);
  return parts.length > 2 ? parts.slice(-2).join("/") : file;
}

function FuncInfo(P) {
  this.P = P;
  this.labels = new Array(P.funcName.length);
  this.colors = null;
  this.dark = null;
}
FuncInfo.prototype.name = function (f) {
  return f < 0 ? "" : this.P.strings[this.P.funcName[f]];
};
FuncInfo.prototype.file = function (f) {
  return f < 0 ? "" : this.P.strings[this.P.funcFile[f]];
};
FuncInfo.prototype.location = function (f, short) {
  if (f < 0) return "";
  var file = this.file(f), line = this.P.funcLine[f];
  if (!file) return line ? "line " + line : "";
  return (short ? shortFile(file) : file) + (line ? ":" + line : "");
};
FuncInfo.prototype.label = function (f) {
  var l = this.labels[f];
  if (l === undefined) {
    var loc = this.location(f, true);
    l = this.name(f) || "<unknown>";
    if (loc) l += " (" + loc + ")";
    this.labels[f] = l;
  }
  return l;
};
FuncInfo.prototype.color = function (f, dark) {
  if (this.dark !== dark || !this.colors) {
    this.colors = new Array(this.P.funcName.length);
    this.dark = dark;
  }
  if (f < 0) return dark ? "#4a4f5a" : "#c9ccd3";
  var c = this.colors[f];
  if (c) return c;
  var kind = this.P.funcKind[f];
  var h = hashString(this.name(f) + "\u0000" + this.file(f));
  var r = (h % 1000) / 1000, r2 = ((h >>> 10) % 1000) / 1000;
  var hue, sat, light;
  if (kind === FUNC_NATIVE) { hue = 195 + r * 35; sat = 55; light = 70; }
  else if (kind === FUNC_THREAD) { hue = 265; sat = 20; light = 76; }
  else if (kind === FUNC_SYNTHETIC) { hue = 130 + r * 25; sat = 40; light = 70; }
  else { hue = 6 + r * 40; sat = 78; light = 66 + r2 * 10; }
  if (dark) { sat -= 18; light -= 34; }
  c = "hsl(" + hue.toFixed(0) + "," + sat.toFixed(0) + "%," + light.toFixed(0) + "%)";
  this.colors[f] = c;
  return c;
};

export { FuncInfo, shortFile };
