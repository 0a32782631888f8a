"""The one door to Flower's private names: declared, checked, and patched with care.

The workbench reaches into flwr 1.42.0 (the project's pin) in a few places: to
shorten the timers of Flower's own loops (speed) and to drive the SuperNode's
Runtime API from the site executor (security: the executor decides what runs at a
site). Each side declares what it touches in its own ``flwr_compat.py``
(``federation/site/``, ``federation/coordinator/``) as ``Private`` records; this
module holds what both use:

- ``Private``: one private name (module, attribute, and for a callable the
  parameters the workbench passes), and ``problems()``, which says what no longer
  matches in the installed Flower;
- ``patch``: rebind one name in a Flower module, after checking it; on a mismatch it
  leaves Flower's own behaviour in place and warns (for speed patches: only speed is
  at stake);
- ``require``: the same check for names a process cannot run without; on a mismatch
  it raises ``FlowerContractError`` (the site executor refuses to start: security is
  at stake);
- ``CappedSleep`` and ``prompted_pulls``: the two speed patches both sides apply.

``tests/test_flwr_compat.py`` checks every declaration against the installed Flower
and that each patch takes effect: after a Flower upgrade, run that test rather than
reading this code. The version pin stays in requirements/constraints.txt.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from federation.errors import InternalFault

VERIFIED_VERSION = "1.42.0"  # the Flower these declarations were last checked against
OBJECT_PULL_INITIAL_BACKOFF = 0.02  # Flower: 1 s
OBJECT_PULL_BACKOFF_CAP = 0.5  # Flower: 10 s
OBJECT_PULL_MAX_SECONDS = 60.0  # Flower: 7200 s (a sender that died mid-push hung the puller that long)
PATCHED_MARK = "_workbench_patched"

logger = logging.getLogger("workbench.flwr_contract")


class FlowerContractError(InternalFault, RuntimeError):
    """The installed Flower lacks a private name the workbench cannot run without."""


@dataclass(frozen=True)
class Private:
    """One name inside Flower that is not part of its public API.

    ``params``: for a callable, the parameter names the workbench passes (each must
    still exist); ``fields``: for a protobuf message or an enum-like class, the
    attributes the workbench reads or sets. ``why`` is what the workbench uses it for.
    """

    module: str
    name: str
    why: str
    params: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    callable: bool = True

    @property
    def where(self) -> str:
        return f"{self.module}.{self.name}"

    def resolve(self) -> Any:
        """The object (ImportError or AttributeError when it is gone)."""
        module = importlib.import_module(self.module)
        obj = module
        for part in self.name.split("."):
            obj = getattr(obj, part)
        return obj

    def problems(self) -> list[str]:
        """What no longer matches in the installed Flower (empty: all is as declared)."""
        try:
            obj = self.resolve()
        except (ImportError, AttributeError) as err:
            return [f"{self.where} is gone ({type(err).__name__}: {err})"]
        found = []
        if self.callable and not callable(obj):
            found.append(f"{self.where} is no longer callable ({type(obj).__name__})")
        elif self.params:
            try:
                signature = inspect.signature(obj)
            except (TypeError, ValueError):
                signature = None
            if signature is not None:
                has_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
                missing = [p for p in self.params if p not in signature.parameters and not has_kwargs]
                if missing:
                    found.append(f"{self.where}{signature} no longer takes {', '.join(missing)}")
        for field_name in self.fields:
            descriptor = getattr(obj, "DESCRIPTOR", None)
            fields_by_name = getattr(descriptor, "fields_by_name", None)
            present = field_name in fields_by_name if fields_by_name is not None else hasattr(obj, field_name)
            if not present:
                found.append(f"{self.where} has no {field_name}")
        return found


def contract_problems(declarations: Iterable[Private]) -> list[str]:
    """Every mismatch between ``declarations`` and the installed Flower."""
    return [problem for private in declarations for problem in private.problems()]


def flower_version() -> str:
    import flwr

    return str(flwr.__version__)


def require(declarations: Iterable[Private], *, what: str, declared_in: str) -> None:
    """Raise FlowerContractError when the installed Flower lacks any of ``declarations``."""
    problems = contract_problems(declarations)
    if problems:
        raise FlowerContractError(
            f"{what} relies on private names of Flower {VERIFIED_VERSION}, and the installed flwr "
            f"{flower_version()} does not match them: {'; '.join(problems)}. Nothing was started. Fix: install "
            f"flwr=={VERIFIED_VERSION} (the project's pin), or update the declarations in {declared_in} and "
            "run tests/test_flwr_compat.py."
        )


def patch(
    private: Private, make: Callable[[Any], Any], *, also: Iterable[Private] = (), warnings: list[str] | None = None
) -> bool:
    """Rebind ``private`` to ``make(current value)`` when it (and every name in ``also``)
    still matches its declaration; else leave Flower's own behaviour and warn.

    Returns whether the patch took effect. ``warnings`` collects the warning text."""
    problems = contract_problems([private, *also])
    if problems:
        text = (
            f"Flower's own behaviour kept for {private.where} ({private.why}): flwr {flower_version()} differs "
            f"from {VERIFIED_VERSION}: {'; '.join(problems)}. Only speed is at stake; run "
            "tests/test_flwr_compat.py after a Flower upgrade."
        )
        logger.warning(text)
        if warnings is not None:
            warnings.append(text)
        return False
    module = importlib.import_module(private.module)
    current = getattr(module, private.name)
    setattr(module, private.name, make(current))
    return True


class CappedSleep:
    """The ``time`` module, with ``sleep`` capped; everything else unchanged."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        _time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str):
        return getattr(_time, name)


def capped_time(cap: float) -> Callable[[Any], CappedSleep]:
    """For ``patch``: replace a module's ``time`` with one whose sleeps last at most ``cap``."""

    def make(current: Any) -> CappedSleep:
        return CappedSleep(cap)

    return make


def prompted_pulls(
    pull_objects: Callable[..., Any], *, max_seconds: float = OBJECT_PULL_MAX_SECONDS
) -> Callable[..., Any]:
    """``pull_objects`` retrying a not-yet-available object after 20 ms (doubling up to
    0.5 s) instead of 1 s (doubling up to 10 s), and giving up after ``max_seconds``
    instead of Flower's 2 hours: a sender that died half-way through pushing a message's
    objects must not hang the process that waits for them (Flower then reports the
    message unavailable). Idempotent."""
    if getattr(pull_objects, PATCHED_MARK, False):
        pull_objects = pull_objects.__wrapped__

    @functools.wraps(pull_objects)
    def prompt_pull_objects(*args, **kwargs):
        # Flower's helpers pass their own defaults explicitly: take the smaller.
        kwargs["initial_backoff"] = min(
            kwargs.get("initial_backoff", OBJECT_PULL_INITIAL_BACKOFF), OBJECT_PULL_INITIAL_BACKOFF
        )
        kwargs["backoff_cap"] = min(kwargs.get("backoff_cap", OBJECT_PULL_BACKOFF_CAP), OBJECT_PULL_BACKOFF_CAP)
        given = kwargs.get("max_time")
        kwargs["max_time"] = max_seconds if given is None else min(given, max_seconds)
        return pull_objects(*args, **kwargs)

    setattr(prompt_pull_objects, PATCHED_MARK, True)
    return prompt_pull_objects


PULL_OBJECTS = Private(
    "flwr.supercore.inflatable.inflatable_utils",
    "pull_objects",
    why="object pulls retried after 20 ms, not 1 s, and bounded in time (its helpers call it by this name)",
    params=("initial_backoff", "backoff_cap", "max_time"),
)


def pull_objects_in(module: str) -> Private:
    """``pull_objects`` as ``module`` imported it by name."""
    return Private(
        module,
        "pull_objects",
        why="object pulls retried after 20 ms, not 1 s, and bounded in time",
        params=("initial_backoff", "backoff_cap", "max_time"),
    )


def prompt_object_pulls(
    *modules: str, max_seconds: float = OBJECT_PULL_MAX_SECONDS, warnings: list[str] | None = None
) -> list[str]:
    """Prompt object pulls, given up after ``max_seconds``, in flwr's inflatable_utils and
    in ``modules`` (which import ``pull_objects`` by name); the patches that took effect."""
    applied = []
    for private in (PULL_OBJECTS, *(pull_objects_in(m) for m in modules)):
        if patch(private, functools.partial(prompted_pulls, max_seconds=max_seconds), warnings=warnings):
            applied.append(private.where)
    return applied
