// panels/about.js — "About this profile": how it was recorded, collapsed.

import { registerPanel } from "../registry.js";
import { el } from "../dom.js";
import { aboutRows, splitNotes } from "../summary.js";

registerPanel({
  id: "about",
  slot: "head",
  order: 20,
  create: function (ctx) {
    var quiet = splitNotes(ctx.meta).quiet;
    var about = aboutRows(ctx.P, ctx.meta, ctx.duration, quiet);
    var box = el("details", "about");
    box.id = "mfp-about";
    var summary = el("summary", "about-summary");
    summary.appendChild(el("span", "about-title", "About this profile"));
    summary.appendChild(el("span", "about-gist", about.gist.join(" · ")));
    box.appendChild(summary);
    var dl = el("dl", "about-list");
    about.rows.forEach(function (r) {
      dl.appendChild(el("dt", "", r[0]));
      dl.appendChild(el("dd", "", r[1]));
    });
    box.appendChild(dl);
    if (quiet.length) {
      var ul = el("ul", "about-notes");
      ul.id = "mfp-env-notes";
      quiet.forEach(function (n) { ul.appendChild(el("li", "", n)); });
      box.appendChild(ul);
    }
    return { el: box };
  },
});
