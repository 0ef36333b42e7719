"""Profiles that @profile_card stored in Metaflow, read by pathspec.

The one module of this package that uses Metaflow, and only inside load():
everything else here works without Metaflow installed, and the CLI imports
it only when an argument is a pathspec (tests/structural/test_layers.py).
"""

from __future__ import annotations

import os
import re
from typing import Any

from .profile import Profile

DEFAULT_ARTIFACT = "profile_card_data"
_PATHSPEC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[^/\s]+){2,3}$")


def is_pathspec(arg: str) -> bool:
    """Flow/run/step or Flow/run/step/task, and not a file that exists."""
    return bool(_PATHSPEC.match(arg)) and not os.path.exists(arg)


def profile_of_task(task: Any, artifact: str = DEFAULT_ARTIFACT) -> Profile:
    """The profile in a Metaflow Task's artifact; ValueError saying why not."""
    if artifact not in task:
        raise ValueError(f"task {task.pathspec} has no artifact '{artifact}' "
                         "(was the step decorated with @profile_card?)")
    data = task[artifact].data
    if not isinstance(data, dict) or not data.get("profile"):
        raise ValueError(f"task {task.pathspec}: artifact '{artifact}' holds no profile")
    return Profile.from_bytes(data["profile"])


def load(pathspec: str, artifact: str = DEFAULT_ARTIFACT) -> list[tuple[str, Profile]]:
    """(task id, profile) of the task a pathspec names, or of every task of
    a step (in foreach order). Looks in every namespace, as `card get` does:
    a pathspec names one object exactly."""
    from metaflow import Step, Task, get_namespace, namespace
    from metaflow.exception import MetaflowException

    if not _PATHSPEC.match(pathspec):
        raise ValueError(f"not a pathspec: {pathspec!r} (Flow/run/step or Flow/run/step/task)")
    before = get_namespace()
    namespace(None)
    try:
        if pathspec.count("/") == 3:
            tasks = [Task(pathspec)]
        else:
            tasks = sorted(Step(pathspec), key=lambda t: (t.index is None, t.index or 0,
                                                          _num(t.id)))
        if not tasks:
            raise ValueError(f"step {pathspec} has no tasks")
        return [(t.id, profile_of_task(t, artifact)) for t in tasks]
    except MetaflowException as exc:
        raise ValueError(f"{pathspec}: {exc}") from None
    finally:
        namespace(before)


def _num(task_id: str) -> tuple[int, str]:
    return (int(task_id), "") if task_id.isdigit() else (0, task_id)
