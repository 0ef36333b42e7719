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


# Metaflow 2.19's Runner API (metaflow.runner -> its vendored typeguard ->
# typing_extensions) reads typing.no_type_check_decorator, which Python 3.15
# removed. The flows here run as users run them (`python flow.py run`,
# support.run_flow); the one test of Runner itself (decospecs) fails there
# before our code runs. That failure, and only that one, is reported as an
# expected failure naming the cause, and turns into a pass once Metaflow is
# fixed.
_RUNNER_ON_315 = "has no attribute 'no_type_check_decorator'"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.excinfo is not None and _RUNNER_ON_315 in str(call.excinfo.value):
        report.outcome = "skipped"
        report.wasxfail = "Metaflow's Runner does not import on Python 3.15 (typing.no_type_check_decorator)"
