"""Errors a notebook user meets, as one paragraph with what to do next.

IPython shows an exception's ``_render_traceback_`` instead of its traceback: a
refused budget or an unreachable site is the user's situation to act on, not a bug
to debug through Flower's internals.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """A situation the user can act on; its message says what happened and what next."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class StudyRefused(WorkbenchError):
    """Every site refused the study before anything was trained."""


class SiteUnreachable(WorkbenchError):
    """A site did not answer in time."""
