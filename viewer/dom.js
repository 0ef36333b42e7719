// dom.js — the few DOM helpers every panel uses.
//
// Every string from the profile reaches the page through el()'s
// textContent (or a canvas's fillText), never innerHTML.

import { guard } from "./util.js";

function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function isDark() {
  return !!(window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches);
}

// A segmented toggle: options [[value, label], ...]; onPick(value).
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

function copyButton(getText) {
  var b = el("button", "btn small copy-btn", "Copy name");
  b.type = "button";
  b.addEventListener("click", guard(function () { copyText(getText()); }));
  return b;
}

// Size a canvas to W × H CSS pixels; re-sizing drops the backing store, so
// only when the size changes. Returns its 2D context, scaled.
function sizeCanvas(canvas, W, H) {
  var dpr = window.devicePixelRatio || 1;
  var cw = Math.round(W * dpr), ch = Math.round(H * dpr);
  if (canvas.width !== cw || canvas.height !== ch) {
    canvas.style.width = W + "px";
    canvas.style.height = H + "px";
    canvas.width = cw;
    canvas.height = ch;
  }
  var ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

export { el, isDark, seg, toast, copyText, copyButton, sizeCanvas };
