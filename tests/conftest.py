"""Shared fixtures. Metaflow reads its configuration when first imported, so
the local datastore and metadata are pointed at a fresh directory here,
before any test imports metaflow."""

import os
import tempfile
from pathlib import Path

import pytest

_ROOT = tempfile.mkdtemp(prefix="mfp-tests-")
os.environ.update(
    MFP_TEST_ROOT=_ROOT,
    METAFLOW_DEFAULT_DATASTORE="local",
    METAFLOW_DEFAULT_METADATA="local",
    METAFLOW_DATASTORE_SYSROOT_LOCAL=_ROOT,
    USERNAME="tester",
)
# Cards are stored under the first .metaflow found upwards from the working
# directory, for the flows and for this process alike: make it _ROOT's.
os.makedirs(os.path.join(_ROOT, ".metaflow"), exist_ok=True)
os.chdir(_ROOT)


@pytest.fixture
def flow_dir(request) -> Path:
    from support import new_flow_dir

    return new_flow_dir(request.node.name)
