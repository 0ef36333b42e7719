"""ProfileCard: renders the @profile_card artifact into the self-contained card.

Runs in Metaflow's `card create` subprocess after the task (and, for failed
tasks, when the decorator asks for it). Never raises for bad or missing data:
the card then says what is wrong.

A runtime-updatable card: while the step runs, the task itself rewrites it
with the profile so far (plugins/live.py); render_card() makes both pages,
which carry the hooks Metaflow's card viewers look for (the reload token and
window.metaflow_card_update).
"""

from __future__ import annotations

from typing import Any

from metaflow.cards import MetaflowCard

DEFAULT_ARTIFACT = "profile_card_data"

# Card viewers (the Metaflow UI, `card server`) poll the card's runtime data:
# the same reload token as the page's means "no news" (the update function
# is called and has nothing to do: the whole profile travels in the page),
# another one means "reload the page". Metaflow writes "final" in place of
# the placeholder on the final card.
_RUNTIME_HOOKS = ('<script>window.METAFLOW_RELOAD_TOKEN = "@TOKEN@";'
                  "window.metaflow_card_update = function () { return true; };</script>")


def render_card(profile_bytes: bytes | None, title: str, token: str | None = None,
                error: str | None = None, level: int = 9) -> str:
    from metaflow_profiler.html import render_html

    page = render_html(profile_bytes, title=title, error=error, level=level)
    hooks = _RUNTIME_HOOKS.replace("@TOKEN@", token or MetaflowCard.RELOAD_POLICY_TOKEN)
    head, sep, tail = page.rpartition("</body>")
    return head + hooks + sep + tail if sep else page + hooks


class ProfileCard(MetaflowCard):
    type = "profile_card"
    ALLOW_USER_COMPONENTS = False
    RUNTIME_UPDATABLE = True
    RELOAD_POLICY = MetaflowCard.RELOAD_POLICY_ALWAYS

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._artifact = (options or {}).get("artifact_name", DEFAULT_ARTIFACT)
        self._compare = (options or {}).get("compare", "previous")

    def render(self, task: Any) -> str:
        from ...profile_decorator import fallback_artifact

        title = f"{task.pathspec}"
        try:
            # Where the user's own value held the name, the decorator used the fallback.
            if fallback_artifact(self._artifact) in task:
                self._artifact = fallback_artifact(self._artifact)
            if self._artifact not in task:
                return render_card(None, title, error=(
                    f"No profile data: task {task.pathspec} has no artifact '{self._artifact}'. "
                    "Was the step decorated with @profile_card, and did it start?"))
            data = task[self._artifact].data
        except Exception as exc:  # unreadable datastore, unpickling failure, ...
            return render_card(None, title, error=f"Could not read the profile artifact: {exc}")
        if not isinstance(data, dict) or not data.get("profile"):
            error = data.get("error") if isinstance(data, dict) else None
            message = (error or {}).get("message") if isinstance(error, dict) else None
            return render_card(None, title, error=message or (
                f"Artifact '{self._artifact}' holds no profile"))
        return render_card(self._compared(task, data["profile"]), title)

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

    # The task writes the live card itself (plugins/live.py); Metaflow calls
    # these only for its own runtime renders and for the final data update.
    def render_runtime(self, task: Any, data: Any) -> str:
        return self.render(task)

    def refresh(self, task: Any, data: Any) -> dict[str, Any]:
        return {"live": None}
