"""Helpers shared by the tests (importable as `support`; conftest.py files
cannot be imported reliably when several exist)."""

import os
import re
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_ROOT = os.environ["MFP_TEST_ROOT"]


# Flow and script sources that burn CPU in a child: CPU time spent, measured
# in the process that spent it (the truth the children tests compare with).
# Needs `time` imported before it.
HOT_SOURCE = """\
def hot(seconds):
    t = time.process_time()
    x = 0
    while time.process_time() - t < seconds:
        x += 1
    return time.process_time() - t
"""


def spin(seconds):
    """Run Python code for `seconds` of wall time (on CPU unless the machine is busy)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def overloaded() -> bool:
    """Under a sanitizer (scripts/asan.sh preloads libasan: every read the
    sampler makes is several times slower) or on a machine with more
    runnable work than cores: timing-derived bounds that need the sampler to
    find threads running hold only loosely then."""
    return "asan" in os.environ.get("LD_PRELOAD", "") or \
        os.getloadavg()[0] >= (os.cpu_count() or 1)


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


def run_flow(flow_dir, source_or_file, env=None, **params):
    """Run a flow as a user does, `python flow.py run --<param> <value> ...`
    (not metaflow.Runner: Metaflow 2.19's Runner does not import on Python
    3.15); returns (status, Run), status "successful" or "failed"."""
    import subprocess
    import sys

    from metaflow import Run, namespace

    if os.path.exists(str(source_or_file)):
        flow = flow_dir / os.path.basename(source_or_file)
        if not flow.exists():
            shutil.copy(source_or_file, flow)
    else:
        flow = flow_dir / "flow.py"
        flow.write_text(textwrap.dedent(source_or_file))
    name = re.search(r"^class (\w+)\(FlowSpec\)", flow.read_text(), re.M).group(1)
    run_id = flow_dir / "run-id"
    args = [f"--{k}={v}" for k, v in params.items()]
    proc = subprocess.run([sys.executable, str(flow), "run", "--run-id-file", str(run_id), *args],
                          cwd=flow_dir, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    assert run_id.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    namespace(None)
    return ("successful" if proc.returncode == 0 else "failed"), Run(f"{name}/{run_id.read_text()}")


def profile_card_of(task, step):
    from metaflow.cards import get_cards

    from metaflow_profiler import Profile

    cards = get_cards(task, id=f"profile_card_{step}")
    assert len(cards) == 1
    html = cards[0].get()
    return html, Profile.from_bytes(card_profile_bytes(html))
