// registry.js — where panels announce themselves.
//
// A panel file calls registerPanel({...}) when it loads (html.py includes
// every file in viewer/, so a new panel is a new file, nothing else). The
// fields are described in viewer/README.md; app.js builds the page from
// the registered panels in `order`.

var panels = [];

function registerPanel(spec) {
  if (!spec || typeof spec.id !== "string" || typeof spec.create !== "function") {
    throw new Error("registerPanel needs an id and a create(ctx) function");
  }
  if (spec.slot !== "head" && spec.slot !== "tab") throw new Error("panel " + spec.id + ": slot is 'head' or 'tab'");
  panels.forEach(function (p) {
    if (p.id === spec.id) throw new Error("two panels named " + spec.id);
  });
  panels.push(spec);
}

function registeredPanels() {
  return panels.slice().sort(function (a, b) { return (a.order || 0) - (b.order || 0); });
}

export { registerPanel, registeredPanels };
