// store.js — the one state every panel follows (the Firefox Profiler's
// model): a plain object replaced on every change, so a panel can tell
// what changed by comparing values, and subscribers told after each set().
//
// What lives here is what more than one panel reads (thread/process
// selection, on-CPU filter, time range, search, selected function, tab);
// a panel's own view state (zoom, sort order) stays in the panel.

function createStore(initial) {
  var state = Object.assign({}, initial);
  var subs = [];
  var pending = null, notifying = false;

  function set(patch) {
    var changed = null;
    for (var k in patch) {
      if (state[k] !== patch[k]) {
        changed = changed || {};
        changed[k] = true;
      }
    }
    if (!changed) return;
    state = Object.assign({}, state, patch);
    // a subscriber that sets again is applied after this round, in order
    if (notifying) {
      pending = Object.assign(pending || {}, changed);
      return;
    }
    notifying = true;
    try {
      while (changed) {
        for (var i = 0; i < subs.length; i++) subs[i](state, changed);
        changed = pending;
        pending = null;
      }
    } finally {
      notifying = false;
    }
  }

  return {
    get: function () { return state; },
    set: set,
    subscribe: function (fn) { subs.push(fn); },
  };
}

// A value computed from some state keys, recomputed only when one of them
// changed: derived data (the CPU tree of the current selection) computed
// once however many panels ask.
function memo(keys, compute) {
  var last = null, value;
  return function (state) {
    if (last) {
      var same = true;
      for (var i = 0; i < keys.length; i++) if (last[keys[i]] !== state[keys[i]]) { same = false; break; }
      if (same) return value;
    }
    value = compute(state);
    last = {};
    keys.forEach(function (k) { last[k] = state[k]; });
    return value;
  };
}

export { createStore, memo };
