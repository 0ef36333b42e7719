"""@profile_card: profile a step and attach an interactive profile card to it.

    from metaflow import FlowSpec, step, profile_card

    class Flow(FlowSpec):
        @profile_card
        @step
        def train(self): ...

Hooks, one job each: step_init checks the options and adds the card;
add_to_package puts the engine into the code package for remote workers;
task_pre_step starts the profiler; task_post_step and task_exception stop it
and store the artifact; task_finished renders the card of a failed task,
which Metaflow does not do by itself. While the step runs, plugins/live.py
keeps the card updated with the profile so far. Nothing here may change the step's
outcome: a profiler failure is logged and shown on the card.
"""

from __future__ import annotations

import os
import traceback
from typing import Any, ClassVar

from metaflow.decorators import StepDecorator
from metaflow.exception import MetaflowException

from metaflow_profiler.options import DECORATOR

from . import live, step_facts

CARD_TYPE = "profile_card"
ARTIFACT_FORMAT = 1


class ProfileCardException(MetaflowException):
    headline = "@profile_card: invalid option"


def card_id(step_name: str) -> str:
    return f"profile_card_{step_name}"


class ProfileCardDecorator(StepDecorator):
    """Profile this step; the result is a card with id profile_card_<step>.

    profiler: backend name ("sample" = native sampler; None = best available).
    sample_interval: seconds between samples (default 0.001).
    timeline_interval: seconds between resource-timeline points (default 0.5; 0 = off).
    artifact_name: task artifact that holds the profile (default "profile_card_data").
    create_card: attach the card (default True).
    memory: sampled allocation profiling, Python and native (default True).
    compare: what the card compares with: "previous" (default: the closest earlier
        successful run of this step), a run id or pathspec, or False.
    live_interval: seconds between updates of the live card while the step
        runs, stretching on long steps (default 10; 0 = off; see plugins/live.py).

    Defaults and bounds live in metaflow_profiler/options.py; values given
    as strings (`--with profile_card:memory=False`) are read there too.
    """

    name = "profile_card"
    defaults: ClassVar[dict[str, Any]] = {k: o.default for k, o in DECORATOR.items()}

    def step_init(self, flow, graph, step_name, decorators, environment, flow_datastore, logger):
        self._logger = logger
        self._step_name = step_name
        step_func = getattr(type(flow), step_name, None)
        self._focus = getattr(step_func, "__qualname__", f"{type(flow).__name__}.{step_name}")
        self._check_options(step_name)
        self._check_artifact_name(flow, step_name)
        if self.attributes["create_card"]:
            self._attach_card(step_name, decorators)

    def _check_options(self, step_name: str) -> None:
        from metaflow_profiler.options import OptionError, Options, read

        # Added by --with or METAFLOW_DECOSPECS, it is on every step: naming
        # one of them would point at the wrong place.
        where = (f"step '{step_name}': " if self.statically_defined
                 else "--with profile_card (METAFLOW_DECOSPECS), on every step: ")
        try:
            # Checked values replace the strings, so later hooks (and the
            # task's command line) see True, not "True".
            self.attributes.update(read(DECORATOR, self.attributes, where=where))
            a = self.attributes
            self._options = Options.check(
                where=where, profiler=a["profiler"], sample_interval=a["sample_interval"],
                timeline_interval=a["timeline_interval"], memory=a["memory"],
                subprocesses=a["subprocesses"])
        except OptionError as exc:
            raise ProfileCardException(str(exc)) from None

    def _check_artifact_name(self, flow: Any, step_name: str) -> None:
        from metaflow import FlowSpec

        name = self.attributes["artifact_name"]
        if name in dir(FlowSpec) or name == "name":  # FlowSpec.__init__ sets self.name
            raise ProfileCardException(
                f"step '{step_name}': artifact_name {name!r} is a name FlowSpec defines "
                "(input, index, name, ...); choose another")
        if name in step_facts.assigned_names(getattr(type(flow), step_name, None)):
            raise ProfileCardException(
                f"step '{step_name}': artifact_name {name!r} is an artifact the step sets "
                f"itself (self.{name} = ...); choose another")

    def add_to_package(self):
        """The engine (Python, viewer files, the compiled .so) travels in the
        code package, so a remote worker needs nothing installed; on one
        whose Python cannot load the .so, native.py falls back."""
        import metaflow_profiler

        try:
            from metaflow.packaging_sys import ContentType

            kind = (ContentType.CODE_CONTENT,)  # relative to the folder holding metaflow
        except ImportError:  # Metaflow < 2.16: (path, name in the archive) pairs
            kind = ()
        # Files, not MODULE_CONTENT: Metaflow 2.19 takes a package's __file__
        # (its __init__.py) for the whole package and refuses it.
        root = os.path.dirname(os.path.abspath(metaflow_profiler.__file__))
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for f in files:
                path = os.path.join(folder, f)
                yield (path, os.path.join("metaflow_profiler", os.path.relpath(path, root)), *kind)

    def _attach_card(self, step_name: str, decorators: list) -> None:
        if any(_is_our_card(d, step_name) for d in decorators):
            return  # the user attached it already
        wanted = card_id(step_name)
        from metaflow.plugins.cards.card_decorator import CardDecorator

        deco = CardDecorator(
            attributes={
                "type": CARD_TYPE,
                "id": wanted,
                "options": {"artifact_name": self.attributes["artifact_name"],
                            "compare": self.attributes["compare"]},
            },
            statically_defined=True,
            inserted_by=self.name,
        )
        deco.external_init()
        # Metaflow iterates this list while calling step_init, so the card's
        # own step_init runs right after ours.
        decorators.append(deco)

    def task_pre_step(self, step_name, task_datastore, metadata, run_id, task_id, flow, graph,
                      retry_count, max_user_code_retries, ubf_context, inputs):
        from metaflow_profiler import Profiler

        self._profiler = None
        self._live = None
        self._retry_count = retry_count
        self._start_error = None
        self._attempts = max_user_code_retries + 1 if max_user_code_retries > 0 else 0
        self._requested = step_facts.requested(graph[step_name].decorators)
        try:
            self._profiler = Profiler(options=self._options)
            self._profiler.start()
        except Exception as exc:
            self._profiler = None
            self._start_error = _error_dict(exc)
            self._logger(
                f"[@profile_card] profiler did not start, the step runs unprofiled: {exc}",
                timestamp=False, bad=True,
            )
        if self._profiler is not None and self.attributes["create_card"]:
            self._start_live(flow, graph, step_name, run_id, task_id, retry_count)

    def _start_live(self, flow, graph, step_name, run_id, task_id, retry_count):
        def log(message: str) -> None:
            self._logger(f"[@profile_card] {message}", timestamp=False, bad=True)

        try:
            self._live = live.start(
                self._profiler, self.attributes["live_interval"], flow_name=flow.name,
                run_id=run_id, step_name=step_name, task_id=task_id,
                decorators=graph[step_name].decorators,
                find_card=lambda: _our_card(graph, step_name),
                meta=self._extra_meta(retry_count), log=log)
        except Exception as exc:  # the final card still comes
            log(f"no live card: {type(exc).__name__}: {exc}")

    def task_decorate(self, step_func, flow, graph, retry_count, max_user_code_retries,
                      ubf_context):
        # Runs after every task_pre_step, so the card decorator's uuid exists.
        if max_user_code_retries > 0:
            try:
                _pin_card_uuid(_our_card(graph, self._step_name))
            except Exception as exc:  # Metaflow's internals moved: one card per attempt, as before
                self._logger(f"[@profile_card] each attempt keeps its own card file: {exc}",
                             timestamp=False, bad=True)
        return step_func

    def task_post_step(self, step_name, flow, graph, retry_count, max_user_code_retries):
        self._finish(flow, step_error=None)

    def task_exception(self, exception, step_name, flow, graph, retry_count,
                       max_user_code_retries):
        try:
            error = step_facts.step_error(exception, graph[step_name].decorators, retry_count,
                                          max_user_code_retries)
        except Exception:  # the facts are a nicety; the failure itself must be recorded
            error = {"type": type(exception).__name__, "message": str(exception)}
        self._finish(flow, step_error=error)
        # Returning nothing: the step still fails with the user's exception (or @catch catches it).

    def _finish(self, flow: Any, step_error: dict[str, Any] | None) -> None:
        live_card = getattr(self, "_live", None)
        if live_card is not None:
            live_card.stop()
        try:
            setattr(flow, self._artifact_name(flow), self._artifact(step_error))
        except Exception as exc:  # never let the profiler change the step's outcome
            self._logger(f"[@profile_card] could not save the profile: {exc}",
                         timestamp=False, bad=True)

    def _artifact(self, step_error: dict[str, Any] | None) -> dict[str, Any]:
        from metaflow_profiler import Profile

        extra = dict(self._extra_meta(getattr(self, "_retry_count", 0)),
                     step_failed=step_error is not None)
        live_card = getattr(self, "_live", None)
        if live_card is not None:
            extra["live_updates"] = live_card.updates
            extra["live_cpu_s"] = round(live_card.busy_s, 3)
        notes = list(extra.pop("notes", []))
        if step_error:
            extra["step_error"] = step_error
            notes.extend(step_facts.error_notes(step_error))
        extra["notes"] = notes
        error = self._start_error
        profile = None
        if self._profiler is not None:
            profile = self._profiler.stop(extra_meta=extra)
            error = profile.meta.get("error")
        if profile is None:
            profile = Profile.empty(dict(extra, backend=self.attributes["profiler"], error=error))
        profile = self._with_resources(profile)
        if error:
            self._logger(f"[@profile_card] profiler error: {error['message']}",
                         timestamp=False, bad=True)
        return {
            "format_version": ARTIFACT_FORMAT,
            "backend": self.attributes["profiler"],
            "step_failed": step_error is not None,
            "step_error": step_error,
            "error": error,
            "stats": profile.stats(),
            "profile": profile.to_bytes(),
        }

    def _extra_meta(self, retry_count: int) -> dict[str, Any]:
        """META the live and the final card share: title, focus, attempt."""
        meta: dict[str, Any] = {
            "step_failed": False,
            "title": f"step {self._step_name}",
            # The card opens on the step's own code, below Metaflow's frames.
            "focus": self._focus,
            "attempt": retry_count,
        }
        attempts = getattr(self, "_attempts", 0)
        if attempts:
            n = f"attempt {retry_count + 1} of {attempts}"
            meta.update(attempts=attempts, title=f"step {self._step_name} ({n})",
                        notes=[f"{n} (@retry)"])
        if (getattr(self, "_profiler", None) is not None and self.attributes["live_interval"]
                and live.cprofile_sees_every_thread(self._profiler.backend)):
            meta.setdefault("notes", []).append(live.NO_LIVE_WITH_CPROFILE)
        return meta

    def _with_resources(self, profile: Any) -> Any:
        """What the step asked for (@resources, ...) beside what it used."""
        if not self._requested:
            return profile
        try:
            note = step_facts.resources_note(self._requested, profile.stats())
            return profile.with_meta({"resources": {"requested": self._requested},
                                      "notes": [*profile.meta.get("notes", []), note]})
        except Exception as exc:
            self._logger(f"[@profile_card] resources line left out: {exc}", timestamp=False, bad=True)
            return profile

    def _artifact_name(self, flow: Any) -> str:
        """The configured name, unless the user's own value holds it: theirs
        is never overwritten (step_init refuses the names it can see)."""
        name = self.attributes["artifact_name"]
        if not _holds_user_value(flow, name):
            return name
        fallback = fallback_artifact(name)
        self._logger(f"[@profile_card] the step's artifact '{name}' is its own; the profile is "
                     f"saved as '{fallback}' instead (set artifact_name to avoid this)",
                     timestamp=False, bad=True)
        return fallback

    def task_finished(self, step_name, flow, graph, is_task_ok, retry_count,
                      max_user_code_retries):
        if is_task_ok or not self.attributes["create_card"]:
            return
        # Metaflow renders cards of successful tasks only; render ours here,
        # then the final data update that tells card viewers to stop polling.
        # An attempt @retry will follow also keeps a copy under
        # <id>_attempt<N>: the next attempt's card replaces it under the id.
        deco = _our_card(graph, step_name)
        if deco is not None and deco.card_creator:
            ids = [deco._user_set_card_id]
            if retry_count < max_user_code_retries and deco._user_set_card_id:
                ids.append(f"{deco._user_set_card_id}_attempt{retry_count + 1}")
            for card, mode in ((c, m) for c in ids for m in ("render", "refresh")):
                try:
                    deco.card_creator.create(
                        mode=mode, final=True, card_uuid=deco._card_uuid,
                        user_set_card_id=card,
                        runtime_card=deco._is_runtime_card,
                        decorator_attributes=deco.attributes, card_options=deco.card_options,
                        logger=self._logger,
                    )
                except Exception as exc:
                    self._logger(f"[@profile_card] could not {mode} the card of the failed "
                                 f"step: {exc}", timestamp=False, bad=True)


def _pin_card_uuid(deco: Any) -> None:
    """Give the card one uuid for every attempt of the task. Metaflow names
    a card's file by a uuid drawn per attempt and keeps every file, so with
    @retry `card get --id` found several cards and wrote none; with the
    task's own uuid each attempt's card replaces the one before."""
    import hashlib

    from metaflow import current

    if deco is None or not deco._card_uuid:
        return
    old = deco._card_uuid
    new = hashlib.sha1(f"{current.pathspec}/{deco._user_set_card_id}".encode()).hexdigest()[:32]
    cards = current.card
    store, metas = cards._card_component_store, cards._cards_meta
    if old not in store or old not in metas:
        raise RuntimeError("the card is not where Metaflow keeps it")
    store[new] = store.pop(old)
    metas[new] = dict(metas.pop(old), uuid=new)
    for card_id_, uuid_ in list(cards._card_id_map.items()):
        if uuid_ == old:
            cards._card_id_map[card_id_] = new
    if cards._default_editable_card == old:
        cards._default_editable_card = new
    args = getattr(store[new], "_card_creator_args", {})
    if args.get("card_uuid") == old:
        args["card_uuid"] = new
    info = type(deco)._GLOBAL_CARD_INFO
    if old in info:
        info[new] = dict(info.pop(old), card_uuid=new)
    deco._card_uuid = new


def _our_card(graph: Any, step_name: str) -> Any:
    return next((d for d in graph[step_name].decorators if _is_our_card(d, step_name)), None)


def fallback_artifact(name: str) -> str:
    return f"{name}_profile_card"


def _holds_user_value(flow: Any, name: str) -> bool:
    """Whether `name` is set in this task, by the step or inherited, to
    something other than a @profile_card artifact (an earlier profiled step's
    own is replaced, as every step writes its own)."""
    if name in vars(flow):
        value = vars(flow)[name]
    elif flow._datastore is not None and name in flow._datastore:
        value = flow._datastore[name]
    else:
        return False
    return not (isinstance(value, dict) and "format_version" in value and "profile" in value)


def _is_our_card(deco: Any, step_name: str) -> bool:
    return deco.name == "card" and (
        deco.attributes.get("id") == card_id(step_name) or deco.attributes.get("type") == CARD_TYPE
    )


def _error_dict(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}


def profile_card(f: Any = None, **kwargs: Any) -> Any:
    """The @profile_card decorator, importable from this module as well as from metaflow."""
    import metaflow

    deco = metaflow.profile_card
    return deco(f, **kwargs) if f is not None else deco(**kwargs)
