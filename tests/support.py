"""Helpers shared by the tests (importable as `support`; conftest.py files
cannot be imported reliably when several exist)."""

import os
import re
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_ROOT = os.environ["MFP_TEST_ROOT"]


def new_flow_dir(name: str) -> Path:
    """A fresh working directory for a flow, inside the shared datastore root."""
    return Path(tempfile.mkdtemp(prefix=re.sub(r"\W", "_", name)[:40] + "-", dir=_ROOT))




def card_profile_bytes(html: str) -> bytes | None:
    """The profile a card carries (base64(zlib(bytes)) in #mfp-data)."""
    import base64
    import zlib

    m = re.search(r'id="mfp-data">([A-Za-z0-9+/=\s]*)</script>', html)
    if not m or not m.group(1).strip():
        return None
    return zlib.decompress(base64.b64decode(m.group(1)))
