// search.js — function search that never blocks the page.
//
// The browser's RegExp backtracks: `(a+)+$` against forty a's and a b takes
// longer than the age of the universe, and no JavaScript can interrupt it.
// So a regex is compiled here to a small instruction list and run as a Pike
// VM (Thompson's construction, as RE2 does): every name is read once, left
// to right, with at most one thread per instruction, so a test costs
// O(name length × pattern size) whatever the pattern. Backreferences and
// lookarounds, which need backtracking, are refused with a message.
//
// On top of that the search is debounced (a burst of keystrokes runs once)
// and runs in slices of a few milliseconds, yielding to the page between
// them; a newer query cancels an older one.

var MAX_PROGRAM = 4000; // instructions: {m,n} copies its operand
var MAX_TEXT = 1000; // characters of a name or location looked at
var DEBOUNCE_MS = 90;
var SLICE_MS = 8;

function SearchSyntaxError(message) {
  this.message = message;
}

// --- parser: pattern -> tree ------------------------------------------------

function Parser(src) {
  this.s = src;
  this.i = 0;
}
Parser.prototype.fail = function (msg) {
  throw new SearchSyntaxError(msg + " at position " + this.i);
};
Parser.prototype.peek = function () {
  return this.i < this.s.length ? this.s[this.i] : "";
};
Parser.prototype.alt = function () {
  var items = [this.cat()];
  while (this.peek() === "|") {
    this.i++;
    items.push(this.cat());
  }
  return items.length === 1 ? items[0] : { t: "alt", items: items };
};
Parser.prototype.cat = function () {
  var items = [];
  while (this.i < this.s.length && this.peek() !== "|" && this.peek() !== ")") items.push(this.repeat());
  return { t: "cat", items: items };
};
Parser.prototype.repeat = function () {
  var atom = this.atom();
  for (;;) {
    var c = this.peek(), min, max;
    if (c === "*") { min = 0; max = Infinity; this.i++; }
    else if (c === "+") { min = 1; max = Infinity; this.i++; }
    else if (c === "?") { min = 0; max = 1; this.i++; }
    else if (c === "{" && /^\{\d+(,\d*)?\}/.test(this.s.slice(this.i))) {
      var m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i));
      this.i += m[0].length;
      min = parseInt(m[1], 10);
      max = m[2] === undefined ? min : m[3] === "" ? Infinity : parseInt(m[3], 10);
      if (max < min) this.fail("numbers out of order in {}");
      if (min > 1000 || (max !== Infinity && max > 1000)) this.fail("repeat count too large");
    } else break;
    if (atom.t === "bol" || atom.t === "eol") this.fail("nothing to repeat");
    if (this.peek() === "?") this.i++; // lazy or greedy: the same for "does it match"
    atom = { t: "rep", node: atom, min: min, max: max };
  }
  return atom;
};
Parser.prototype.atom = function () {
  var c = this.s[this.i++];
  if (c === "(") {
    if (this.s.slice(this.i, this.i + 2) === "?:") this.i += 2;
    else if (this.peek() === "?") this.fail("lookarounds and named groups are not supported in search");
    var inner = this.alt();
    if (this.peek() !== ")") this.fail("missing )");
    this.i++;
    return inner;
  }
  if (c === ")") this.fail("unmatched )");
  if (c === "*" || c === "+" || c === "?") this.fail("nothing to repeat");
  if (c === "[") return this.cls();
  if (c === ".") return { t: "any" };
  if (c === "^") return { t: "bol" };
  if (c === "$") return { t: "eol" };
  if (c === "\\") return this.escape(false);
  return { t: "char", c: c.toLowerCase().charCodeAt(0) };
};
var CLASS_ESC = {
  d: [[48, 57]],
  w: [[48, 57], [65, 90], [95, 95], [97, 122]],
  s: [[9, 13], [32, 32], [160, 160]],
};
Parser.prototype.escape = function (inClass) {
  if (this.i >= this.s.length) this.fail("\\ at the end");
  var c = this.s[this.i++];
  var low = c.toLowerCase();
  if (CLASS_ESC[low]) return { t: "class", ranges: CLASS_ESC[low], neg: c !== low };
  if (/[1-9]/.test(c)) this.fail("backreferences are not supported in search");
  if (!inClass && (c === "b" || c === "B")) this.fail("word boundaries are not supported in search");
  var map = { t: 9, n: 10, r: 13, f: 12, v: 11, 0: 0 };
  var code = map[c] !== undefined ? map[c] : c.charCodeAt(0);
  if (/[a-zA-Z]/.test(c) && map[c] === undefined) this.fail("unknown escape \\" + c);
  return { t: "char", c: String.fromCharCode(code).toLowerCase().charCodeAt(0) };
};
Parser.prototype.cls = function () {
  var neg = false, ranges = [];
  if (this.peek() === "^") { neg = true; this.i++; }
  var first = true;
  while (this.i < this.s.length && (this.peek() !== "]" || first)) {
    first = false;
    var lo;
    if (this.peek() === "\\") {
      this.i++;
      var e = this.escape(true);
      if (e.t === "class") {
        if (e.neg) this.fail("negated classes inside [] are not supported in search");
        ranges = ranges.concat(e.ranges);
        continue;
      }
      lo = e.c;
    } else lo = this.s.charCodeAt(this.i++);
    var hi = lo;
    if (this.peek() === "-" && this.s[this.i + 1] && this.s[this.i + 1] !== "]") {
      this.i++;
      hi = this.peek() === "\\" ? (this.i++, this.escape(true).c) : this.s.charCodeAt(this.i++);
      if (hi === undefined || hi < lo) this.fail("bad range in []");
    }
    ranges.push([lo, hi]);
  }
  if (this.peek() !== "]") this.fail("missing ]");
  this.i++;
  return { t: "class", ranges: ranges, neg: neg };
};

// --- compiler: tree -> program ------------------------------------------------

var OP_CHAR = 0, OP_ANY = 1, OP_CLASS = 2, OP_SPLIT = 3, OP_JMP = 4, OP_BOL = 5, OP_EOL = 6, OP_MATCH = 7;

function Program() {
  this.op = [];
  this.a = [];
  this.b = [];
  this.classes = [];
}
Program.prototype.emit = function (op, a, b) {
  if (this.op.length >= MAX_PROGRAM) throw new SearchSyntaxError("pattern too large for search");
  this.op.push(op);
  this.a.push(a === undefined ? 0 : a);
  this.b.push(b === undefined ? 0 : b);
  return this.op.length - 1;
};
Program.prototype.node = function (n) {
  var i, pc;
  switch (n.t) {
    case "char": this.emit(OP_CHAR, n.c); break;
    case "any": this.emit(OP_ANY); break;
    case "bol": this.emit(OP_BOL); break;
    case "eol": this.emit(OP_EOL); break;
    case "class":
      this.classes.push(n);
      this.emit(OP_CLASS, this.classes.length - 1);
      break;
    case "cat":
      for (i = 0; i < n.items.length; i++) this.node(n.items[i]);
      break;
    case "alt": {
      var jumps = [];
      for (i = 0; i < n.items.length - 1; i++) {
        pc = this.emit(OP_SPLIT);
        this.a[pc] = pc + 1;
        this.node(n.items[i]);
        jumps.push(this.emit(OP_JMP));
        this.b[pc] = this.op.length;
      }
      this.node(n.items[n.items.length - 1]);
      for (i = 0; i < jumps.length; i++) this.a[jumps[i]] = this.op.length;
      break;
    }
    case "rep": {
      for (i = 0; i < n.min; i++) this.node(n.node);
      if (n.max === Infinity) {
        pc = this.emit(OP_SPLIT);
        this.a[pc] = pc + 1;
        this.node(n.node);
        this.emit(OP_JMP, pc);
        this.b[pc] = this.op.length;
      } else {
        var outs = [];
        for (i = n.min; i < n.max; i++) {
          pc = this.emit(OP_SPLIT);
          this.a[pc] = pc + 1;
          outs.push(pc);
          this.node(n.node);
        }
        for (i = 0; i < outs.length; i++) this.b[outs[i]] = this.op.length;
      }
      break;
    }
  }
};

function inClass(cls, c) {
  var upper = String.fromCharCode(c).toUpperCase().charCodeAt(0);
  var hit = false;
  for (var i = 0; i < cls.ranges.length && !hit; i++) {
    var r = cls.ranges[i];
    hit = (c >= r[0] && c <= r[1]) || (upper >= r[0] && upper <= r[1]);
  }
  return hit !== cls.neg;
}

// Pike VM: `mark` keeps one thread per instruction and position.
function SafeRegex(pattern) {
  var p = new Parser(pattern);
  var tree = p.alt();
  if (p.i < pattern.length) p.fail("unmatched )");
  var prog = new Program();
  prog.node(tree);
  prog.emit(OP_MATCH);
  this.prog = prog;
  this.mark = new Int32Array(prog.op.length);
  this.gen = 0;
  this.stack = [];
}
SafeRegex.prototype.add = function (list, pc0, pos, len) {
  var P = this.prog, mark = this.mark, gen = this.gen, stack = this.stack;
  stack.length = 0;
  stack.push(pc0);
  while (stack.length) {
    var pc = stack.pop();
    if (mark[pc] === gen) continue;
    mark[pc] = gen;
    switch (P.op[pc]) {
      case OP_JMP: stack.push(P.a[pc]); break;
      case OP_SPLIT: stack.push(P.b[pc], P.a[pc]); break;
      case OP_BOL: if (pos === 0) stack.push(pc + 1); break;
      case OP_EOL: if (pos === len) stack.push(pc + 1); break;
      case OP_MATCH: return true;
      default: list.push(pc);
    }
  }
  return false;
};
SafeRegex.prototype.test = function (text) {
  var s = text.length > MAX_TEXT ? text.slice(0, MAX_TEXT) : text;
  s = s.toLowerCase();
  var P = this.prog, len = s.length;
  if (this.gen > 2e9) {
    this.gen = 0;
    this.mark.fill(0);
  }
  var clist = [], nlist = [];
  this.gen++;
  if (this.add(clist, 0, 0, len)) return true;
  for (var pos = 0; pos < len; pos++) {
    var c = s.charCodeAt(pos);
    this.gen++;
    nlist.length = 0;
    for (var k = 0; k < clist.length; k++) {
      var pc = clist[k], op = P.op[pc];
      var ok = op === OP_ANY ? c !== 10 && c !== 13 && c !== 0x2028 && c !== 0x2029 : op === OP_CHAR ? P.a[pc] === c : op === OP_CLASS ? inClass(P.classes[P.a[pc]], c) : false;
      if (ok && this.add(nlist, pc + 1, pos + 1, len)) return true;
    }
    if (this.add(nlist, 0, pos + 1, len)) return true; // a match may start anywhere
    var tmp = clist;
    clist = nlist;
    nlist = tmp;
  }
  return false;
};

// {test(text)} for a query, or {error}; null for an empty query.
function compileQuery(q, regex) {
  if (!q) return null;
  if (regex) {
    try {
      return new SafeRegex(q);
    } catch (e) {
      if (e instanceof SearchSyntaxError) return { error: e.message };
      throw e;
    }
  }
  var low = q.toLowerCase();
  return { test: function (s) { return s.toLowerCase().indexOf(low) >= 0; } };
}

// Runs searches over every function's name and location; onResult(match,
// error) gets a Uint8Array per function (or null) when one finishes.
function Searcher(info, nfuncs, onResult) {
  this.info = info;
  this.n = nfuncs;
  this.onResult = onResult;
  this.token = 0;
  this.timer = null;
  this.busy = false;
  this.runs = 0; // searches started, for the tests of the debounce
}
Searcher.prototype.run = function (query, regex, now) {
  var self = this, token = ++this.token;
  clearTimeout(this.timer);
  if (!query) {
    this.busy = false;
    this.onResult(null, null);
    return;
  }
  this.busy = true;
  var go = function () { self.start(token, query, regex); };
  if (now) go();
  else this.timer = setTimeout(go, DEBOUNCE_MS);
};
Searcher.prototype.start = function (token, query, regex) {
  this.runs++;
  var m = compileQuery(query, regex), self = this;
  if (m.error) {
    this.busy = false;
    this.onResult(null, m.error);
    return;
  }
  var match = new Uint8Array(this.n), f = 0, info = this.info;
  var slice = function () {
    if (token !== self.token) return; // a newer query took over
    var t0 = performance.now();
    for (; f < self.n; f++) {
      if ((f & 15) === 0 && performance.now() - t0 > SLICE_MS) {
        setTimeout(slice, 0);
        return;
      }
      var loc = info.location(f);
      if (m.test(info.name(f)) || (loc && m.test(loc))) match[f] = 1;
    }
    self.busy = false;
    self.onResult(match, null);
  };
  slice();
};

export { compileQuery, Searcher, SafeRegex };
