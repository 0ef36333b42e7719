"""ProfileCard: renders the @profile_card artifact into the self-contained card.

Runs in Metaflow's `card create` subprocess after the task (and, for failed
tasks, when the decorator asks for it). Never raises for bad or missing data:
the card then says what is wrong.
"""

from __future__ import annotations

from typing import Any

from metaflow.cards import MetaflowCard

DEFAULT_ARTIFACT = "profile_card_data"


class ProfileCard(MetaflowCard):
    type = "profile_card"
    ALLOW_USER_COMPONENTS = False

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._artifact = (options or {}).get("artifact_name", DEFAULT_ARTIFACT)
        self._compare = (options or {}).get("compare", "previous")

    def render(self, task: Any) -> str:
        from metaflow_profiler.html import render_html

        title = f"{task.pathspec}"
        try:
            if self._artifact not in task:
                return render_html(None, title=title, error=(
                    f"No profile data: task {task.pathspec} has no artifact '{self._artifact}'. "
                    "Was the step decorated with @profile_card, and did it start?"))
            data = task[self._artifact].data
        except Exception as exc:  # unreadable datastore, unpickling failure, ...
            return render_html(None, title=title, error=f"Could not read the profile artifact: {exc}")
        if not isinstance(data, dict) or not data.get("profile"):
            error = data.get("error") if isinstance(data, dict) else None
            message = (error or {}).get("message") if isinstance(error, dict) else None
            return render_html(None, title=title, error=message or (
                f"Artifact '{self._artifact}' holds no profile"))
        return render_html(self._compared(task, data["profile"]), title=title)

    def _compared(self, task: Any, profile: bytes) -> bytes:
        """The profile with its baseline attached (issue 15), or as it was
        when comparing is off or the profile cannot be read."""
        from metaflow_profiler import Profile

        from .compare import find_baseline

        try:
            this = Profile.from_bytes(profile)
        except ValueError:
            return profile  # the card says what is wrong with it
        baseline, info = find_baseline(task, self._artifact, self._compare)
        if info is None:
            return profile
        try:
            return this.with_baseline(baseline, info).to_bytes()
        except ValueError as exc:  # a corrupt baseline: say so, show this run
            return this.with_baseline(None, {"missing": f"The run to compare with has an "
                                                        f"unreadable profile: {exc}"}).to_bytes()
