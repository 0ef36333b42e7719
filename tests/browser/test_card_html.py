"""render_html without a browser: the page is self-contained and escaped."""

from __future__ import annotations

import base64
import json
import re
import zlib
from pathlib import Path

import pytest

from metaflow_profiler import _format
from metaflow_profiler.html import ViewerModuleError, link, link_order, parse_module, render_html

EVIL = "</script><script>alert(1)</script><!--"


def data_of(page: str) -> str:
    m = re.search(r'<script type="application/octet-stream" id="mfp-data">([^<]*)</script>', page)
    assert m, "no data element"
    return m.group(1)


def test_payload_round_trips_as_base64_zlib():
    raw = b"MFPROF\x01" + bytes(range(256)) * 10
    page = render_html(raw, title="t")
    assert zlib.decompress(base64.b64decode(data_of(page))) == raw


def parts_of(page: str):
    m = re.search(r'<script type="application/json" id="mfp-parts">([^<]*)</script>', page)
    assert m, "no parts element"
    return json.loads(m.group(1))


def test_the_samples_columns_inflate_apart_from_the_rest():
    """The card's data is one zlib stream of the profile, byte for byte,
    flushed at both ends of SAMPLES' columns where #mfp-parts says: the
    viewer inflates the rest for its first view and the columns after it."""
    from card_fixtures import load_builder, sample_profile

    from metaflow_profiler.html import LAZY_SAMPLES, _samples_columns

    b = load_builder()()
    th = b.thread(1, b.string("MainThread"), 1)
    work = b.stack(-1, b.frame(b.func(b.string("work"), b.string("w.py"), 1, 0), 1))
    n = LAZY_SAMPLES + 1
    for i in range(n):
        b.sample((i + 1) * 10_000, work, th, 10_000, 1)
    data = b.encode(json.dumps({"duration_ns": n * 10_000}))
    page = render_html(data)
    z = base64.b64decode(data_of(page))
    assert zlib.decompress(z) == data
    c0, c1 = _samples_columns(data)
    assert c1 < len(data)  # sections follow SAMPLES: the tail is not empty
    start, end = parts_of(page)["samples"]
    head = zlib.decompressobj()
    assert head.decompress(z[:start]) == data[:c0]  # everything up to the count comes out
    assert zlib.decompressobj(-15).decompress(z[start:end]) == data[c0:c1]
    tail = zlib.decompressobj(-15)
    assert tail.decompress(z[end:-4]) == data[c1:] and tail.eof
    # a smaller profile (decoded whole before the first frame), and bytes
    # that are not a section table, travel as one plain stream, with no parts
    for junk in (sample_profile()[0], b"MFPROF\x01\x07\xff", b"not a profile", b"MFPROF\x01\x01\x05ab"):
        page = render_html(junk)
        assert zlib.decompress(base64.b64decode(data_of(page))) == junk and parts_of(page) is None


def test_title_and_error_cannot_break_out_of_their_elements():
    page = render_html(None, title=EVIL, error=EVIL)
    assert EVIL not in page
    assert "<script>alert(1)" not in page
    # the template's scripts and nothing else
    assert page.count("<script") == 6 and page.count("</script>") == 6
    assert data_of(page) == ""
    assert "<title>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!--</title>" in page


def test_page_loads_nothing_from_outside():
    page = render_html(b"MFPROF\x01", title="t")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # CSP: no request can leave the card


def test_viewer_is_inlined_whole():
    page = render_html(b"MFPROF\x01")
    # linked: no module syntax is left for the browser to resolve
    assert not re.search(r"^\s*(import|export)\b", page, re.M)
    for marker in ("function parseProfile", "function FlameGraph", "function Timeline", "--bg:"):
        assert marker in page
    assert not re.search(r"\{\{(TITLE|TITLE_JSON|ERROR_JSON|OPTIONS_JSON|PARTS_JSON|DATA|CSS|JS)\}\}", page)


# --- the viewer's modules, linked by html.py ---------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_modules_come_after_what_they_import():
    mods = {
        p: parse_module(p, s)
        for p, s in {
            "app.js": 'import { b } from "./lib/b.js";\nfunction boot() {}\nexport { boot };',
            "lib/b.js": 'import { a } from "../a.js";\nvar b = a + 1;\nexport { b };',
            "a.js": "var a = 1;\nexport { a };",
        }.items()
    }
    assert link_order(mods) == ["a.js", "lib/b.js", "app.js"]
    assert mods["lib/b.js"].imports == {"a.js": ["a"]}


@pytest.mark.parametrize(
    ("sources", "why"),
    [
        ({"x.js": 'import { nope } from "./app.js";'}, "does not export nope"),
        ({"x.js": 'import { a } from "./missing.js";'}, "not a viewer file"),
        ({"x.js": "export { ghost };"}, "defines no top-level"),
        ({"x.js": "export function f() {}"}, "only 'import"),
        (
            {
                "x.js": 'import { y } from "./y.js";\nvar x = 1;\nexport { x };',
                "y.js": 'import { x } from "./x.js";\nvar y = 1;\nexport { y };',
            },
            "import cycle",
        ),
    ],
)
def test_wrong_declarations_fail_when_the_card_is_built(sources, why):
    sources = {"app.js": "function boot() {}\nexport { boot };", **sources}
    with pytest.raises(ViewerModuleError, match=why):
        link(sources)


def test_each_module_sees_only_what_it_imports():
    """A module that uses another's name without importing it fails in the
    page (each file is its own function scope), so the declarations are true."""
    js = link(
        {
            "app.js": 'import { a } from "./a.js";\nfunction boot() { return a + hidden; }\nexport { boot };',
            "a.js": "var a = 1;\nvar hidden = 2;\nexport { a };",
        }
    )
    assert 'var a = modules["a.js"].a;' in js
    assert "hidden" not in js.split('modules["app.js"]')[1].split("function boot")[0]


def c_constants() -> dict[str, int]:
    header = (ROOT / "native/profile/profile.h").read_text()
    out = {m[0]: int(m[1]) for m in re.findall(r"#define MFP_(\w+) (\d+)u", header)}
    out.update({m[0]: int(m[1]) for m in re.findall(r"MFP_(FUNC_\w+) = (\d+)", header)})
    return out


def test_flag_and_kind_constants_agree_in_c_python_and_js():
    c = c_constants()
    js_text = (ROOT / "viewer/constants.js").read_text()
    js = {m[0]: int(m[1]) for m in re.findall(r"var (\w+) = (\d+);", js_text)}
    py = {k: v for k, v in vars(_format).items() if k.isupper()}
    names = ["SAMPLE_ON_CPU", "THREAD_MAIN", "FUNC_PYTHON", "FUNC_NATIVE", "FUNC_THREAD", "FUNC_SYNTHETIC",
             "PROCESS_ROOT", "PROCESS_PARTIAL"]
    for n in names:
        assert c[n] == js[n] == py[n], n
    assert set(js) == set(py) == set(names)


def test_viewer_and_api_use_the_constants_not_bare_numbers():
    py = [ROOT / "src/metaflow_profiler/profile.py"]
    for path in [*(ROOT / "viewer").rglob("*.js"), *py]:
        text = path.read_text()
        assert not re.search(r"(Flags|flags|\bsf|\btf)(\[[^\]]+\]|\b) & [12]\b", text), path
        assert not re.search(r"\bf & 1\b", text), path
        assert not re.search(r"kind === \d", text), path


def test_every_meta_key_the_viewer_reads_is_documented():
    fmt = (ROOT / "docs/FORMAT.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", fmt)) | set(re.findall(r"`[a-z_]+\.([a-z_]+)`", fmt))
    read = set()
    for path in (ROOT / "viewer").rglob("*.js"):
        text = path.read_text()
        read |= set(re.findall(r"\bmeta\.([a-z_]+)", text))
        # nested objects: limits.x, timeline t.x, rss r.x, network net.x
        read |= set(re.findall(r"\b(?:limits|info\.limits|net|r|t)\.([a-z_]+_[a-z_]+)\b", text))
    assert read, "the pattern finds nothing: the test is broken"
    missing = sorted(k for k in read if k not in documented)
    assert not missing, f"META keys the card reads but docs/FORMAT.md does not document: {missing}"
