"""options.py: one reader per option, for Python values and for the strings
Metaflow hands a task (`--with profile_card:memory=False`)."""

import pytest

from metaflow_profiler import Profiler
from metaflow_profiler.options import DECORATOR, ENGINE, OptionError, Options, read


@pytest.mark.parametrize(
    "name, given, expected",
    [
        ("memory", "False", False), ("memory", "True", True), ("memory", " false", False),
        ("memory", False, False),
        ("sample_interval", "0.01", 0.01), ("sample_interval", 1, 1.0),
        ("timeline_interval", "0", 0.0), ("timeline_interval", 0, 0.0),
        ("profiler", "None", "sample"), ("profiler", None, "sample"), ("profiler", "trace", "trace"),
        ("memory_rate", "4096", 4096), ("memory_rate", 4096.0, 4096),
    ],
)
def test_python_and_metaflow_string_forms(name, given, expected):
    assert read(ENGINE, {name: given})[name] == expected


@pytest.mark.parametrize(
    "name, given",
    [("memory", "yes"), ("memory", 1), ("sample_interval", "1e-9"), ("sample_interval", "inf"),
     ("sample_interval", True), ("timeline_interval", "0.0001"), ("memory_rate", 1.5),
     ("memory_rate", 0), ("profiler", "nope"), ("max_samples", -1)],
)
def test_bad_values_name_the_option(name, given):
    with pytest.raises(OptionError, match=rf"^{name} must|^{name} names"):
        read(ENGINE, {name: given})


def test_errors_use_the_callers_spelling_and_place():
    with pytest.raises(OptionError, match=r"^step 'train': --interval must be .* got 'x'$"):
        Options.check({"sample_interval": "--interval"}, where="step 'train': ",
                      sample_interval="x")
    with pytest.raises(ValueError, match=r"^interval must be"):
        Profiler(interval=0)


def test_defaults_are_defined_once():
    o = Options.check()
    assert (o.profiler, o.sample_interval, o.timeline_interval, o.memory) == ("sample", 0.001, 0.5, True)
    assert (o.interval_ns, o.timeline_interval_ns) == (1_000_000, 500_000_000)
    assert DECORATOR["sample_interval"] is ENGINE["sample_interval"]
    p = Profiler()
    assert p.options == o


def test_profile_reports_the_interval_used():
    with Profiler(interval="0.002", timeline_interval=0) as p:
        sum(range(10000))
    assert p.profile.meta["interval_ns"] == 2_000_000
    assert p.profile.meta["timeline_interval_ns"] == 0
