"""The run a card compares with (issue 15): by default the closest earlier
run of the same flow, in the current namespace, whose task of this step
succeeded and stored a profile; or the run the user named with
@profile_card(compare=...). Runs while the card renders, so it reads runs
through the Metaflow client and never raises: a failure is a sentence on
the card, and the card is otherwise what it would have been.
"""

from __future__ import annotations

from typing import Any

from metaflow import Flow, Run, Task, get_namespace, namespace

from metaflow_profiler import Profile
from metaflow_profiler.pathspec import profile_of_task

# Bounds the card's render time on flows with long histories: a step that
# has not succeeded with a profile in this many earlier runs has no baseline.
MAX_RUNS = 50


def find_baseline(task: Any, artifact: str, compare: Any) -> tuple[Profile | None, dict | None]:
    """(baseline profile or None, META `compare`), or (None, None) when
    comparing is off."""
    if compare is False or compare is None:
        return None, None
    flow, run_id, step, _ = task.pathspec.split("/")
    try:
        if compare == "previous":
            return _previous(task, flow, run_id, step, artifact)
        return _chosen(task, flow, step, str(compare), artifact)
    except Exception as exc:  # a datastore or client failure must not cost the card
        return None, {"missing": f"Could not look for a run to compare with: {exc}"}


def _previous(task: Any, flow: str, run_id: str, step: str, artifact: str):
    created = Run(f"{flow}/{run_id}").created_at
    looked = 0
    for run in Flow(flow).runs():  # newest first
        if run.id == run_id or run.created_at > created:
            continue
        looked += 1
        if looked > MAX_RUNS:
            break
        found = _task_of(run, step, task.index, artifact)
        if found is not None:
            return found[1], _info(run.id, found[0], "previous")
    ns = get_namespace()
    why = f"No earlier run of {flow} whose step {step} succeeded with a profile"
    if ns:
        why += f" in namespace {ns}"
    if looked > MAX_RUNS:
        why += f" among the last {MAX_RUNS} runs"
    return None, {"missing": why + "."}


def _chosen(task: Any, flow: str, step: str, compare: str, artifact: str):
    parts = compare.split("/")
    if len(parts) == 1:
        parts = [flow, *parts]
    before = get_namespace()
    namespace(None)  # a named run is found wherever it is, as `card get` does
    try:
        return _named(task, step, parts, compare, artifact)
    finally:
        namespace(before)


def _named(task: Any, step: str, parts: list[str], compare: str, artifact: str):
    if len(parts) == 4:
        t = Task("/".join(parts))
        return profile_of_task(t, artifact), _info(t.parent.parent.id, t, "chosen")
    run = Run("/".join(parts[:2]))
    found = _task_of(run, parts[2] if len(parts) == 3 else step, task.index, artifact)
    if found is None:
        return None, {"missing": f"Run {compare} has no successful task of step "
                                 f"{parts[2] if len(parts) == 3 else step} with a profile."}
    return found[1], _info(run.id, found[0], "chosen")


def _task_of(run: Any, step: str, index: Any, artifact: str) -> tuple[Any, Profile] | None:
    """The run's task of `step` that succeeded with a profile: the one with
    the same foreach index when there is one, else the first."""
    try:
        tasks = list(run[step])
    except KeyError:
        return None
    tasks.sort(key=lambda t: t.index != index)
    for t in tasks:
        try:
            if not t.successful:
                continue
            profile = profile_of_task(t, artifact)
        except Exception:  # no artifact, unreadable: not a baseline
            continue
        if not profile.meta.get("step_failed"):
            return t, profile
    return None


def _info(run_id: str, task: Any, how: str) -> dict[str, Any]:
    return {"baseline": run_id, "pathspec": task.pathspec, "how": how}
