"""The layers of ARCHITECTURE.md, checked on the source: no upward imports,
the engine API does not import Metaflow, C subsystems include only the
headers the graph below allows, and the viewer makes no network requests."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
NATIVE = REPO / "native"
VIEWER = REPO / "viewer"


# ---- Python ------------------------------------------------------------------

def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports stay inside
    their package, which is the layer itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)) or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value)
    return out


def top(name: str) -> str:
    return name.split(".")[0]


# layer package -> top-level packages it must not import
FORBIDDEN = {
    SRC / "metaflow_profiler": {"metaflow", "metaflow_extensions"},
    SRC / "metaflow_extensions" / "profiler": set(),
}
# what the Metaflow glue may import from this project
GLUE_MAY_IMPORT = {"metaflow", "metaflow_profiler", "metaflow_extensions"}


def py_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def test_python_layers_exist():
    for root in FORBIDDEN:
        assert py_files(root), f"no Python files under {root}"


# The one layer-2 module that reads Metaflow runs by pathspec for the CLI;
# it may import metaflow inside functions only, so the engine API, and the
# CLI given files, work without Metaflow.
READS_METAFLOW_LAZILY = SRC / "metaflow_profiler" / "pathspec.py"


def module_level_imports(path: Path) -> set[str]:
    """What a file imports when it is imported (not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lazy = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy.update(id(n) for n in ast.walk(node) if n is not node)
    out = set()
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", py_files(SRC / "metaflow_profiler"),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_engine_api_does_not_import_metaflow(path):
    forbidden = FORBIDDEN[SRC / "metaflow_profiler"]
    found = module_level_imports(path) if path == READS_METAFLOW_LAZILY else imported_modules(path)
    bad = {m for m in found if top(m) in forbidden}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)} (layer 2 may not)"


def test_the_lazy_metaflow_reader_is_lazy():
    assert "metaflow" in {top(m) for m in imported_modules(READS_METAFLOW_LAZILY)}
    assert "metaflow" not in {top(m) for m in module_level_imports(READS_METAFLOW_LAZILY)}


@pytest.mark.parametrize("path", py_files(SRC / "metaflow_extensions" / "profiler"),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_glue_imports_only_metaflow_and_the_engine_api(path):
    ours = {"metaflow_profiler", "metaflow_extensions", "viewer", "native"}
    for m in imported_modules(path):
        if top(m) in ours:
            assert top(m) in GLUE_MAY_IMPORT, f"{path.relative_to(REPO)} imports {m}"
        if top(m) == "metaflow_extensions":
            assert m.startswith("metaflow_extensions.profiler"), f"{path} imports {m}"


def test_import_scanner_sees_imports(tmp_path):
    """The checker itself: every import form it must catch."""
    f = tmp_path / "m.py"
    f.write_text("import metaflow.cards\nfrom metaflow import FlowSpec\nfrom . import x\n"
                 "import importlib\nimportlib.import_module('metaflow_extensions.a')\n"
                 "__import__('metaflow')\ndef f():\n    import os.path\n")
    assert imported_modules(f) == {"metaflow.cards", "metaflow", "importlib",
                                   "metaflow_extensions.a", "os.path"}


# ---- C --------------------------------------------------------------------------

# subsystem -> what its files may include besides their own folder: a folder
# name allows that folder's public header (<name>/<name>.h); a path allows
# that one file. profile/ is the base and includes nothing of ours.
C_GRAPH = {
    "profile": set(),
    "python": {"profile"},
    "sampler": {"profile", "python"},
    "timeline": {"profile"},
    "heap": {"profile", "python"},
    "tracer": {"profile"},
    "render": {"profile"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.MULTILINE)


def includes(path: Path) -> list[Path]:
    """Quoted includes of a C file, resolved against its folder."""
    return [(path.parent / inc).resolve() for inc in INCLUDE.findall(path.read_text())]


def allowed(sub: str, target: Path) -> bool:
    rel = target.relative_to(NATIVE.resolve()).as_posix()
    folder = rel.split("/")[0]
    if folder == sub:
        return True
    for ok in C_GRAPH[sub]:
        if rel == ok or rel == f"{ok}/{ok}.h":
            return True
    return False


C_FILES = sorted(p for p in NATIVE.glob("*/*") if p.suffix in (".c", ".h")
                 and p.parent.name not in ("tests", "build"))


def test_every_c_subsystem_is_in_the_graph():
    subs = {p.parent.name for p in C_FILES}
    assert subs, "no C sources found"
    assert subs <= set(C_GRAPH), f"add {sorted(subs - set(C_GRAPH))} to C_GRAPH"


@pytest.mark.parametrize("path", C_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_c_subsystem_includes_only_what_the_graph_allows(path):
    sub = path.parent.name
    for target in includes(path):
        assert target.exists(), f"{path.relative_to(REPO)} includes missing {target}"
        assert allowed(sub, target), (
            f"{path.relative_to(REPO)} includes {target.relative_to(NATIVE.resolve())}; "
            f"{sub}/ may include only its own headers and {sorted(C_GRAPH[sub]) or 'nothing of ours'}")


def test_module_c_is_the_only_file_at_the_top():
    assert sorted(p.name for p in NATIVE.glob("*.c")) == ["module.c"]
    for target in includes(NATIVE / "module.c"):
        assert target.exists()


def test_include_checker_rejects_a_private_header(tmp_path):
    """The graph check itself: a subsystem reaching into profile's private
    store.h, or into a sibling it may not use, is refused."""
    assert not allowed("tracer", (NATIVE / "profile" / "store.h").resolve())
    assert not allowed("sampler", (NATIVE / "timeline" / "timeline.h").resolve())
    assert not allowed("profile", (NATIVE / "python" / "python.h").resolve())
    assert allowed("tracer", (NATIVE / "profile" / "profile.h").resolve())
    assert allowed("heap", (NATIVE / "python" / "python.h").resolve())
    assert not allowed("heap", (NATIVE / "python" / "layout.h").resolve())
    assert not allowed("heap", (NATIVE / "sampler" / "memread.h").resolve())
    assert not allowed("sampler", (NATIVE / "python" / "layout.h").resolve())


# CPython's internals (Py_BUILD_CORE, internal/pycore_*.h) are known in one
# folder only, so a new release is a change to native/python/ alone.
CPYTHON_INTERNALS = re.compile(
    r"^\s*#\s*(?:define|undef)\s+Py_BUILD_CORE\b|^\s*#\s*include\s*[<\"][^>\"]*(?:internal/|pycore_)",
    re.MULTILINE)
ALL_C = sorted(p for p in NATIVE.rglob("*") if p.suffix in (".c", ".h")
               and "build" not in p.relative_to(NATIVE).parts)


def internals_used(path: Path) -> bool:
    return bool(CPYTHON_INTERNALS.search(path.read_text()))


@pytest.mark.parametrize("path", ALL_C, ids=lambda p: str(p.relative_to(REPO)))
def test_only_native_python_knows_cpython_internals(path):
    if path.parent == NATIVE / "python" or path.parent == NATIVE / "tests":
        return
    assert not internals_used(path), (
        f"{path.relative_to(REPO)} uses CPython's internal headers; only native/python/ may "
        "(add what it needs to native/python/python.h)")


def test_cpython_internals_live_in_native_python():
    assert internals_used(NATIVE / "python" / "layout.h")


def test_internals_checker_sees_internal_headers(tmp_path):
    f = tmp_path / "x.c"
    for text in ("#define Py_BUILD_CORE 1\n", "#  include <internal/pycore_frame.h>\n",
                 '#include "pycore_interp.h"\n', "#undef Py_BUILD_CORE\n"):
        f.write_text(text)
        assert internals_used(f), text
    f.write_text("#include <Python.h>\n#include <frameobject.h>\n")
    assert not internals_used(f)


# ---- viewer ----------------------------------------------------------------------

NETWORK = [
    (re.compile(r"\bfetch\s*\("), "fetch()"),
    (re.compile(r"\bXMLHttpRequest\b"), "XMLHttpRequest"),
    (re.compile(r"\bWebSocket\b"), "WebSocket"),
    (re.compile(r"\bEventSource\b"), "EventSource"),
    (re.compile(r"\bsendBeacon\b"), "navigator.sendBeacon"),
    # static imports of sibling files are linked by html.py into the page;
    # a dynamic import or one of anything else would be a request
    (re.compile(r"\bimport\s*\(|\bimport\s[^;]*\bfrom\s*['\"](?!\.\.?/)"), "a JS module import"),
    (re.compile(r"\bimportScripts\b"), "importScripts"),
    (re.compile(r"https?://|wss?://", re.IGNORECASE), "an http(s)/ws URL"),
    (re.compile(r"""\b(?:src|href)\s*=\s*["']?//""", re.IGNORECASE), "a protocol-relative URL"),
]
VIEWER_FILES = sorted(p for p in VIEWER.rglob("*") if p.suffix in (".js", ".html", ".css"))


def test_viewer_files_exist():
    assert any(p.suffix == ".js" for p in VIEWER_FILES)
    assert any(p.suffix == ".html" for p in VIEWER_FILES)


@pytest.mark.parametrize("path", VIEWER_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_viewer_makes_no_network_requests(path):
    text = path.read_text(encoding="utf-8")
    for pattern, what in NETWORK:
        m = pattern.search(text)
        assert not m, (f"{path.relative_to(REPO)} line {text.count(chr(10), 0, m.start()) + 1}: "
                       f"{what} ({m.group(0)!r}); the card must work offline")


def test_card_page_forbids_network_by_policy():
    html = (VIEWER / "card.html").read_text(encoding="utf-8")
    m = re.search(r'http-equiv="Content-Security-Policy"\s+content="([^"]*)"', html)
    assert m, "card.html has no Content-Security-Policy"
    assert "default-src 'none'" in m.group(1)
    assert "connect-src" not in m.group(1)


def test_network_patterns_catch_requests():
    for snippet in ["fetch('x')", "new XMLHttpRequest()", "new WebSocket(u)",
                    "import x from 'y'", "import { a } from \"https://cdn/x.js\"", "import('./x.js')",
                    "a = 'https://example.org'", '<script src="//cdn/x.js">']:
        assert any(p.search(snippet) for p, _ in NETWORK), snippet
    assert not any(p.search('import { guard } from "./util.js";') for p, _ in NETWORK)
