"""python -m metaflow_profiler, as a user runs it."""

import json
import subprocess
import sys
import textwrap

from support import card_profile_bytes

from metaflow_profiler import Profile, _native


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


JOB = textwrap.dedent("""
    import sys
    def crunch():
        return sum(i * i for i in range(1_500_000))
    def fail():
        crunch()
        raise ValueError("bad value")
    if sys.argv[1] == "raise":
        fail()
    if sys.argv[1] == "exit":
        crunch()
        sys.exit("my message")
    crunch()
""")


def test_the_scripts_exception_is_pythons_and_its_profile_is_written(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    r = cli("run", "-o", "p.mfprof", "job.py", "raise", cwd=tmp_path)
    assert r.returncode == 1, r.stderr  # as `python job.py raise`
    tb = r.stderr[r.stderr.index("Traceback"):r.stderr.index("ValueError: bad value")]
    assert 'File "job.py", line 9, in <module>' in tb and "in fail" in tb
    assert "runpy" not in tb and "metaflow_profiler" not in tb  # only the script's frames
    prof = Profile.load(tmp_path / "p.mfprof")
    assert prof.meta["step_failed"] and prof.meta["step_error"]["message"] == "bad value"
    assert any(f.name == "crunch" for f in prof.functions())


def test_sys_exit_with_a_message_prints_it_and_exits_1(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    r = cli("run", "-o", "p.mfprof", "job.py", "exit", cwd=tmp_path)
    assert r.returncode == 1 and "my message" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / "p.mfprof").exists()


def test_top_and_collapsed_start_at_the_script(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    assert cli("run", "-o", "p.mfprof", "job.py", "ok", cwd=tmp_path).returncode == 0
    r = cli("top", "p.mfprof", "-n", "3", cwd=tmp_path)
    top = r.stderr.strip().splitlines()[-3:]
    assert all("job.py" in row for row in top), r.stderr  # not main, _run, run_path, ...
    assert cli("export", "p.mfprof", "--format", "collapsed", "-o", "c.txt",
               cwd=tmp_path).returncode == 0
    rows = [line.rsplit(" ", 1) for line in (tmp_path / "c.txt").read_text().splitlines()]
    heaviest = max(rows, key=lambda r: int(r[1]))[0]
    # (crunch or its generator below it: where sum() was caught)
    assert heaviest.startswith("<module> (job.py:1);crunch"), heaviest


def test_top_lines_names_the_hot_line(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    assert cli("run", "-o", "p.mfprof", "job.py", "ok", cwd=tmp_path).returncode == 0
    r = cli("top", "p.mfprof", "--lines", "-n", "2", cwd=tmp_path)
    assert r.returncode == 0
    assert "job.py:4)" in r.stderr, r.stderr  # the generator's line inside crunch


def test_bad_input_and_output_are_one_line_each(tmp_path):
    (tmp_path / "job.py").write_text(JOB)
    data = _native.Builder().encode(json.dumps({"duration_ns": "soon"}))
    (tmp_path / "typed.mfprof").write_bytes(data)
    cases = [
        (("top", "/dev/zero"), "does not start with MFPROF"),
        (("top", "typed.mfprof"), "META duration_ns must be a number"),
        (("run", "-o", str(tmp_path / "no" / "p.mfprof"), "job.py", "ok"), "cannot write the profile"),
        (("run", "missing.py"), "cannot run 'missing.py'"),
    ]
    for args, message in cases:
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and message in r.stderr, (args, r.stderr)
    good = cli("run", "-o", "p.mfprof", "job.py", "ok", cwd=tmp_path)
    assert good.returncode == 0
    for args in (("export", "p.mfprof", "-o", "/proc/nope/x.json"), ("html", "p.mfprof", "-o", "/")):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot write" in r.stderr, r.stderr


def test_collapsed_folds_imports_unless_asked_not_to(tmp_path):
    (tmp_path / "job.py").write_text("import json, email.mime.multipart, http.client, asyncio\n")
    assert cli("run", "-i", "0.0002", "-o", "p.mfprof", "job.py", cwd=tmp_path).returncode == 0
    for flag, frozen in (((), False), (("--no-fold-imports",), True)):
        r = cli("export", "p.mfprof", "--format", "collapsed", "-o", "c.txt", *flag, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        text = (tmp_path / "c.txt").read_text()
        assert ("_find_and_load" in text) == frozen, text[:400]
        assert ("import " in text) != frozen, text[:400]
