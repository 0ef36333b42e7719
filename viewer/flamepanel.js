// flamepanel.js — a flame graph with its breadcrumb, "Reset zoom" and the
// details line of the selected box: what the CPU and memory panels share.

import { guard, pct } from "./util.js";
import { el, copyButton } from "./dom.js";
import { FlameGraph } from "./flame.js";

function breadcrumb(fg, nav, hint) {
  nav.textContent = "";
  if (!fg.tree) return;
  var chain = fg.ancestors(fg.zoom);
  var items = chain, hidden = [];
  if (chain.length > 8 && !fg.crumbsOpen) {
    items = chain.slice(0, 2).concat([null]).concat(chain.slice(-4));
    hidden = chain.slice(2, -4);
  }
  items.forEach(function (node, i) {
    if (i > 0) nav.appendChild(el("span", "crumb-sep", "›"));
    if (node === null) {
      // the frames in between, one click away
      var gap = el("button", "crumb crumb-gap", "… " + hidden.length + " more");
      gap.type = "button";
      gap.title = hidden.map(function (n) { return fg.info.name(fg.tree.func[n]) || "<unknown>"; }).join(" › ");
      gap.addEventListener("click", guard(function () {
        fg.crumbsOpen = true;
        breadcrumb(fg, nav, hint);
      }));
      nav.appendChild(gap);
      return;
    }
    var f = fg.tree.func[node];
    var b = el("button", "crumb", f < 0 ? fg.opts.rootLabel : fg.info.name(f) || "<unknown>");
    b.type = "button";
    if (node === fg.zoom) b.setAttribute("aria-current", "true");
    b.title = f < 0 ? "" : fg.info.label(f);
    b.addEventListener("click", guard(function () { fg.setZoom(node); }));
    nav.appendChild(b);
  });
  if (hint) {
    var h = hint();
    if (h) nav.appendChild(h);
  }
}

// opts: {id, format, rootLabel, aria, emptyText, extra (element in the bar),
//        nodeColor(node, dark) -> colour|null (instead of the function's),
//        onZoom(fg, node), details(fg, node, box), hint() -> element|null}
function makeFlamePanel(ctx, opts) {
  var panel = el("section", "panel flame-panel");
  panel.id = opts.id;
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
  var view = { panel: panel, crumbs: crumbs, details: details };
  var fg = new FlameGraph(host, ctx.info, {
    format: opts.format,
    rootLabel: opts.rootLabel,
    ariaLabel: opts.aria,
    emptyText: opts.emptyText,
    nodeColor: opts.nodeColor,
    onZoom: function (node) {
      view.refresh();
      if (opts.onZoom) opts.onZoom(fg, node);
    },
  });
  reset.addEventListener("click", guard(function () { fg.setZoom(0); }));
  view.flame = fg;
  view.refresh = function () {
    breadcrumb(fg, crumbs, opts.hint);
    fillDetails(ctx, fg, details, opts);
  };
  return view;
}

function fillDetails(ctx, fg, box, opts) {
  var node = fg.selected, fmt = opts.format;
  box.textContent = "";
  if (node <= 0 || !fg.tree) {
    box.hidden = true;
    return;
  }
  var f = fg.tree.func[node], root = fg.tree.total[0] || 1;
  box.hidden = false;
  var left = el("div", "det-main");
  left.appendChild(el("span", "det-name", ctx.info.name(f) || "<unknown>"));
  left.appendChild(el("span", "det-loc", ctx.info.location(f)));
  box.appendChild(left);
  var nums = el("div", "det-nums");
  nums.appendChild(el("span", "", "total " + fmt(fg.tree.total[node]) + " (" + pct(fg.tree.total[node] / root) + ")"));
  nums.appendChild(el("span", "", "self " + fmt(fg.tree.self[node]) + " (" + pct(fg.tree.self[node] / root) + ")"));
  box.appendChild(nums);
  box.appendChild(copyButton(function () { return ctx.info.name(f); }));
  if (opts.details) opts.details(fg, node, box);
}

export { makeFlamePanel };
