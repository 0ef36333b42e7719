"""Shared fixtures. Metaflow reads its configuration when first imported, so
the local datastore and metadata are pointed at a fresh directory here,
before any test imports metaflow."""

import os
import re
import tempfile
from pathlib import Path

import pytest

_ROOT = tempfile.mkdtemp(prefix="mfp-tests-")
os.environ.update(
    METAFLOW_DEFAULT_DATASTORE="local",
    METAFLOW_DEFAULT_METADATA="local",
    METAFLOW_DATASTORE_SYSROOT_LOCAL=_ROOT,
    USERNAME="tester",
)
# Cards are stored under the first .metaflow found upwards from the working
# directory, for the flows and for this process alike: make it _ROOT's.
os.makedirs(os.path.join(_ROOT, ".metaflow"), exist_ok=True)
os.chdir(_ROOT)
REPO = Path(__file__).resolve().parents[1]


def new_flow_dir(name: str) -> Path:
    """A fresh working directory for a flow, inside the shared datastore root."""
    return Path(tempfile.mkdtemp(prefix=re.sub(r"\W", "_", name)[:40] + "-", dir=_ROOT))


@pytest.fixture
def flow_dir(request) -> Path:
    return new_flow_dir(request.node.name)


def card_profile_bytes(html: str) -> bytes | None:
    """The profile a card carries (base64(zlib(bytes)) in #mfp-data)."""
    import base64
    import zlib

    m = re.search(r'id="mfp-data">([A-Za-z0-9+/=\s]*)</script>', html)
    if not m or not m.group(1).strip():
        return None
    return zlib.decompress(base64.b64decode(m.group(1)))
