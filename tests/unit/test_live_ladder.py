"""When memory calls for a live card update (plugins/live.py, MemoryLadder):
past 80 % of the limit, then at each further 5 %, and from the start again
once memory is back under 75 %."""

from metaflow_extensions.profiler.plugins.live import MemoryLadder


def updates(shares):
    ladder = MemoryLadder()
    return [s for s in shares if ladder.due(s)]


def test_updates_past_80_percent_then_at_each_further_5():
    assert updates([0.1, 0.5, 0.79, 0.8, 0.82, 0.84, 0.86, 0.9, 0.91, 0.97, 0.99]) == \
        [0.8, 0.86, 0.91, 0.97]


def test_memory_hovering_at_a_rung_updates_once():
    assert updates([0.81, 0.79, 0.81, 0.78, 0.82, 0.76, 0.84]) == [0.81]


def test_a_fall_under_75_percent_rearms_the_ladder():
    # A worker the OOM killer took at 95 %, then the step itself grows: its
    # updates come at 80 % again, not only past 100 % (before, the worker's
    # peak left the next rung at 100 % and the step's OOM kill had no update
    # from just before it).
    assert updates([0.5, 0.95, 0.2, 0.4, 0.7, 0.8, 0.84, 0.86, 0.92]) == [0.95, 0.8, 0.86, 0.92]
