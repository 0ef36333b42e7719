"""render_html without a browser: the page is self-contained and escaped."""

from __future__ import annotations

import base64
import re
import zlib

from metaflow_profiler.html import render_html

EVIL = "</script><script>alert(1)</script><!--"


def data_of(page: str) -> str:
    m = re.search(r'<script type="application/octet-stream" id="mfp-data">([^<]*)</script>', page)
    assert m, "no data element"
    return m.group(1)


def test_payload_round_trips_as_base64_zlib():
    raw = b"MFPROF\x01" + bytes(range(256)) * 10
    page = render_html(raw, title="t")
    assert zlib.decompress(base64.b64decode(data_of(page))) == raw


def test_title_and_error_cannot_break_out_of_their_elements():
    page = render_html(None, title=EVIL, error=EVIL)
    assert EVIL not in page
    assert "<script>alert(1)" not in page
    # the template's scripts and nothing else
    assert page.count("<script") == 4 and page.count("</script>") == 4
    assert data_of(page) == ""
    assert "<title>&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!--</title>" in page


def test_page_loads_nothing_from_outside():
    page = render_html(b"MFPROF\x01", title="t")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # CSP: no request can leave the card


def test_viewer_is_inlined_whole():
    page = render_html(b"MFPROF\x01")
    for marker in ("function parseProfile", "function FlameGraph", "function Timeline", "--bg:"):
        assert marker in page
    assert not re.search(r"\{\{(TITLE|TITLE_JSON|ERROR_JSON|DATA|CSS|JS)\}\}", page)
