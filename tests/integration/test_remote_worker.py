"""A remote worker, simulated as Metaflow's remote bootstrap sets it up: the
flow's code package extracted into an empty directory and run with
PYTHONPATH=<dir>/.mf_code by an interpreter that has only Metaflow's own
dependencies (requests, boto3) — not Metaflow, not this package. The engine
must come from the code package: on the same Python the full native
profile; on another Python minor (the .so cannot load) a pure-Python
profile and a note that says how to get the native one. The step never fails."""

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support import REPO, card_profile_bytes, new_flow_dir

from metaflow_profiler import Profile

pytestmark = [pytest.mark.integration, pytest.mark.packaging]

FLOW = """
from metaflow import FlowSpec, profile_card, step


def hot_remote():
    return sum(i * i for i in range(3_000_000))


class RemoteFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.work)

    @profile_card
    @step
    def work(self):
        import metaflow_profiler
        self.engine_from = metaflow_profiler.__file__
        self.total = hot_remote()
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RemoteFlow()
"""


def _other_minor() -> str:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    for v in ("3.12", "3.11", "3.13"):
        if v != here and list(Path.home().glob(f".pyenv/versions/{v}.*/bin/python{v}")):
            return v
    pytest.fail("no second CPython minor in ~/.pyenv/versions for the other-Python worker")


def _worker_python(version: str) -> str:
    """A venv with only Metaflow's own dependencies, kept under .venv/ between runs."""
    venv = REPO / ".venv" / f"worker-py{version}"
    py = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        base = (sys._base_executable if version == f"{sys.version_info.major}.{sys.version_info.minor}"
                else str(sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))[-1]))
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "requests", "boto3"], check=True)
        (venv / ".ready").touch()
    return str(py)


@pytest.fixture(scope="module")
def code_package():
    d = new_flow_dir("package")
    (d / "remote_flow.py").write_text(FLOW)
    out = subprocess.run([sys.executable, "remote_flow.py", "package", "save", str(d / "pkg.tgz")],
                         cwd=d, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return d / "pkg.tgz"


def _run_on_worker(pkg: Path, python: str) -> tuple[str, Profile, str]:
    """(the step's engine_from, the card's profile, the worker's output)."""
    work = new_flow_dir("worker")
    with tarfile.open(pkg) as tar:
        tar.extractall(work, filter="data")
    (work / ".metaflow").mkdir()  # as the bootstrap does: the local datastore lives here
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "USERNAME": "worker",
           "PYTHONPATH": str(work / ".mf_code"), "METAFLOW_DEFAULT_DATASTORE": "local",
           "METAFLOW_DEFAULT_METADATA": "local"}
    run = subprocess.run([python, "remote_flow.py", "run"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    run_id = re.search(r"\[(\d+)/work/\d+ ", run.stdout + run.stderr).group(1)
    card = work / "card.html"
    got = subprocess.run([python, "remote_flow.py", "card", "get", f"{run_id}/work",
                          "--id", "profile_card_work", str(card)], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0 and card.exists(), got.stderr[-3000:]
    read = subprocess.run(
        [python, "-c", "import sys; from metaflow import Task, namespace; namespace(None); "
         f"print(Task('RemoteFlow/{run_id}/work/' + sys.argv[1])['engine_from'].data)",
         re.search(rf"\[{run_id}/work/(\d+) ", run.stdout + run.stderr).group(1)],
        cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    profile = Profile.from_bytes(card_profile_bytes(card.read_text()))
    return read.stdout.strip(), profile, run.stdout + run.stderr


def _hot_share(profile: Profile) -> float:
    rows = {r.name: r for r in profile.functions()}
    return rows["hot_remote"].samples / rows["RemoteFlow.work"].samples


def test_same_python_worker_gets_the_native_profile(code_package):
    py = _worker_python(f"{sys.version_info.major}.{sys.version_info.minor}")
    engine_from, profile, _ = _run_on_worker(code_package, py)
    assert "/.mf_code/metaflow_profiler/" in engine_from  # from the package, nothing installed
    assert profile.meta["backend"] == "sample"
    assert "native_missing" not in profile.meta
    assert profile.meta["sampler_mode"].startswith(("without the GIL", "public C API"))
    assert _hot_share(profile) > 0.8


def test_other_python_worker_gets_a_python_profile_and_the_note(code_package):
    engine_from, profile, output = _run_on_worker(code_package, _worker_python(_other_minor()))
    assert "/.mf_code/metaflow_profiler/" in engine_from
    assert profile.meta["backend"] == "pysample" and profile.meta["backend_requested"] == "sample"
    assert "the compiled engine was built for" in profile.meta["native_missing"]
    note = next(n for n in profile.meta["notes"] if n.startswith("native engine missing"))
    assert "pip install metaflow-profiler" in note and "@pypi" in note
    assert _hot_share(profile) > 0.8
    assert "Traceback" not in output
