"""The package as a new user gets it: `python -m build` makes the sdist, the
sdist builds into a wheel (the C engine compiled from the sdist alone), the
wheel installs into a fresh venv with Metaflow from the index, and the demo
runs there; the `card get` commands it prints work as root without a
USERNAME. Slow (a compile and an install): scripts/test.sh runs it once."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO, card_profile_bytes, new_flow_dir

from metaflow_profiler import Profile

pytestmark = [pytest.mark.integration, pytest.mark.packaging]


def _ok(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert out.returncode == 0, f"{cmd}:\n{(out.stdout + out.stderr)[-4000:]}"
    return out.stdout


def test_sdist_wheel_install_demo_round_trip():
    d = new_flow_dir("packaging")
    _ok([sys.executable, "-m", "build", "--sdist", "-o", str(d / "dist"), str(REPO)])
    (sdist,) = (d / "dist").glob("metaflow_profiler-*.tar.gz")
    _ok([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(d / "wheels"), str(sdist)])
    (wheel,) = (d / "wheels").glob("metaflow_profiler-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.match(r"metaflow_profiler/_native\.cpython-.*\.so$", n) for n in names)
    assert "metaflow_profiler/_viewer/card.html" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    src = {str(p.relative_to(REPO / "src")) for p in (REPO / "src").rglob("*.py")}
    assert src <= set(names), sorted(src - set(names))  # setup.py lists every package

    venv = d / "venv"
    _ok([sys._base_executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    _ok([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)])

    # As root in a container: USER=root, no USERNAME.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(d), "USER": "root", "DEMO_PYTHON": py,
           "DEMO_DIR": str(d / "demo")}
    out = _ok(["bash", str(REPO / "scripts" / "demo.sh")], env=env)
    commands = [line.strip() for line in out.splitlines() if " card get " in line]
    assert len(commands) == 2, out
    for cmd in commands:
        _ok(["bash", "-c", cmd], env={"PATH": "/usr/bin:/bin", "HOME": str(d), "USER": "root"})
        html = Path(cmd.split()[-1]).read_text()
        profile = Profile.from_bytes(card_profile_bytes(html))
        rows = {r.name: r for r in profile.functions()}
        assert rows["featurize"].samples > 0.5 * rows["TrainFlow.train"].samples
