"""python -m metaflow_profiler, as a user runs it."""

import json
import subprocess
import sys
import textwrap

from support import card_profile_bytes

from metaflow_profiler import Profile


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "metaflow_profiler", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_run_a_script_then_read_the_profile(tmp_path):
    (tmp_path / "job.py").write_text(textwrap.dedent("""
        import sys
        def crunch():
            return sum(i * i for i in range(2_000_000))
        crunch()
        sys.exit(3)
    """))
    r = cli("run", "-o", "p.mfprof", "--html", "card.html", "job.py", cwd=tmp_path)
    assert r.returncode == 3, r.stderr  # the script's own exit status
    assert "crunch" in r.stderr
    prof = Profile.load(tmp_path / "p.mfprof")
    assert any(f.name == "crunch" for f in prof.functions())
    assert card_profile_bytes((tmp_path / "card.html").read_text()) == prof.to_bytes()

    r = cli("top", "p.mfprof", "-n", "10", cwd=tmp_path)
    assert r.returncode == 0 and "crunch" in r.stderr
    r = cli("export", "p.mfprof", "-o", "s.json", cwd=tmp_path)
    assert r.returncode == 0
    assert json.loads((tmp_path / "s.json").read_text())["exporter"] == "metaflow-profiler"


def test_corrupt_profile_is_a_clear_error(tmp_path):
    (tmp_path / "bad.mfprof").write_bytes(b"MFPROF\x01\x05\xff")
    r = cli("top", "bad.mfprof", cwd=tmp_path)
    assert r.returncode == 2
    assert "not a valid profile" in r.stderr
    r = cli("top", "missing.mfprof", cwd=tmp_path)
    assert r.returncode == 2 and "No such file" in r.stderr
