"""The three channels of trouble: a user's mistake, a refusal, a broken promise.

Each message states the rule, then the bad value, then the fix.
"""

from __future__ import annotations


class PrivacyBudgetError(Exception):
    """Base class of every error this package raises on purpose."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the message already says what
        # happened and what to do, which is all a notebook user needs.
        return [f"{type(self).__name__}: {self}"]


class InvalidMechanism(PrivacyBudgetError, ValueError):
    """A mechanism (DpEvent) that the ledger cannot account for."""


class InvalidBudget(PrivacyBudgetError, ValueError):
    """An epsilon, delta, cap or allocation outside its allowed range."""


class LedgerError(PrivacyBudgetError):
    """A ledger operation that breaks a rule: a wrong key, a missing file, a bad commit."""


class LedgerUnavailable(LedgerError):
    """The machine keeps the ledger from being read or written (permissions, a full or
    read-only disk, an I/O error): not damage, and nothing was spent."""


_ENVIRONMENT = (
    # (what SQLite or the OS says, what it is, the fix): checked in order
    (
        "permission denied",
        "permission denied",
        "give the user that runs it write access to {folder} and every file in it "
        "(the ledger, its -wal and -shm files, its key), e.g. `chown -R USER {folder}`",
    ),
    (
        "readonly database",
        "the ledger or its folder cannot be written (permissions, or a read-only mount)",
        "give the user that runs it write access to {folder} and every file in it (the ledger, its -wal and -shm "
        "files, its key), or mount the disk read-write",
    ),
    ("read-only file system", "the file system is read-only", "mount it read-write, or move the state folder"),
    (
        "unable to open database file",
        "the ledger's folder cannot be opened or written (permissions, or a missing folder)",
        "check that {folder} exists and that the user that runs it may write there",
    ),
    ("disk is full", "the disk is full", "free space on the disk holding {folder} (`df -h {folder}`)"),
    ("no space left", "the disk is full", "free space on the disk holding {folder} (`df -h {folder}`)"),
    ("quota exceeded", "the disk quota is exceeded", "free space or raise the quota of the disk holding {folder}"),
    (
        "disk i/o error",
        "the disk reported an I/O error",
        "check the disk (`dmesg`); copy the whole state folder to a healthy disk, every file of it",
    ),
    (
        "input/output error",
        "the disk reported an I/O error",
        "check the disk (`dmesg`); copy the whole state folder to a healthy disk, every file of it",
    ),
)


def environment_problem(error: BaseException, *, path) -> LedgerUnavailable | None:
    """A LedgerUnavailable naming the cause and the fix when ``error`` (an OSError or an
    SQLite error) comes from the machine rather than the ledger; else None."""
    import errno
    import sqlite3
    from pathlib import Path

    if isinstance(error, OSError) and not isinstance(error, sqlite3.Error):
        by_errno = {
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
            errno.EROFS: "read-only file system",
            errno.ENOSPC: "no space left",
            errno.EDQUOT: "quota exceeded",
            errno.EIO: "input/output error",
        }
        text = by_errno.get(error.errno or -1)
    elif isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
    else:
        return None
    if text is None:
        return None
    folder = Path(path).parent
    for needle, what, fix in _ENVIRONMENT:
        if needle in text:
            return LedgerUnavailable(
                f"The ledger {path} cannot be used: {what} ({error}). This is the machine: the ledger is not "
                f"damaged and nothing was written to it. Fix: {fix.format(folder=folder)}; then run `workbench budget "
                f"verify --ledger {path}`. Never replace the ledger with an older copy: that would erase "
                "recorded spending."
            )
    return None


class LedgerIntegrityError(LedgerError):
    """A ledger whose entries no longer prove themselves: edited, removed or forged."""


class AccountingFault(PrivacyBudgetError):
    """An internal failure of the accounting itself: a bug to report, never the user's
    mistake nor a refusal. The message carries the numbers that reproduce it."""


class NoNoiseFits(InvalidBudget):
    """Even the most noise a calibration may use costs more than its target.

    ``prior_epsilon`` is set where the target is a total that earlier spending counts
    towards; callers that know the project turn this into ProjectBudgetSpent.
    """

    def __init__(self, *, target_epsilon: float, maximum: float, epsilon_at_maximum: float) -> None:
        self.target_epsilon = target_epsilon
        self.maximum = maximum
        self.epsilon_at_maximum = epsilon_at_maximum
        self.prior_epsilon: float | None = None
        super().__init__(
            f"No noise fits: even the most noise allowed (noise multiplier {maximum:g}) costs epsilon "
            f"{fmt_epsilon(epsilon_at_maximum)}, above the target {target_epsilon:g}. Fix: raise the "
            "target, or release less (fewer steps, fewer statistics)."
        )


class BudgetRefused(PrivacyBudgetError):
    """Base of every refusal for lack of budget: the ledger would go beyond a limit."""


class ProjectBudgetSpent(BudgetRefused):
    """A project's earlier spending at a site leaves no room for the release asked for.

    Its message is one paragraph with the project's own numbers only (never another
    project's spending nor the dataset's cap: a refusal may reach the coordinator).

    >>> print(ProjectBudgetSpent(project="quickstart", site="hospital_01", spent=0.999,
    ...                          target_epsilon=1.0, allocation=1.0, maximum=100.0))
    Refused: project 'quickstart' has already spent epsilon 0.999 at site hospital_01 (its allocation there is 1.00), so a training whose total for the project is 1 leaves no room for more: even the most noise the site adds (noise multiplier 100) would take the project past 1. Nothing was trained or charged. Fix: run the study as a new project with its own allocation from the ethics board, ask the board to raise this project's allocation and pass a target above 0.999, or plan a smaller study.
    """

    def __init__(
        self,
        *,
        project: str,
        site: str,
        spent: float,
        target_epsilon: float,
        allocation: float | None,
        maximum: float,
    ) -> None:
        self.project = project
        self.site = site
        self.spent = spent
        self.target_epsilon = target_epsilon
        self.allocation = allocation
        self.maximum = maximum
        granted = (
            f"its allocation there is {fmt_epsilon(allocation)}"
            if allocation is not None
            else "it has no allocation there yet"
        )
        super().__init__(
            f"Refused: project '{project}' has already spent epsilon {spent:.3g} at site {site} "
            f"({granted}), so a training whose total for the project is {target_epsilon:g} leaves no room "
            f"for more: even the most noise the site adds (noise multiplier {maximum:g}) would take the "
            f"project past {target_epsilon:g}. Nothing was trained or charged. Fix: run the study as a new "
            "project with its own allocation from the ethics board, ask the board to raise this project's "
            f"allocation and pass a target above {spent:.3g}, or plan a smaller study."
        )


class BudgetExceeded(BudgetRefused):
    """A refused release: it would exceed a dataset cap or a project allocation.

    Fail closed: a dataset without a cap or a project without an allocation is refused
    too (``cap`` is then ``None``). The message states the numbers and the fix.

    >>> err = BudgetExceeded(
    ...     requested_epsilon=0.31, total_after=1.12, remaining=0.19, cap=1.0, delta=1e-5,
    ...     limit_kind="project allocation", dataset="hospital_01", project="quickstart",
    ...     set_by="ethics-board", set_on="2026-11-29T10:00:00Z")
    >>> print(err)
    Refused: this release would exceed the project allocation for dataset 'hospital_01' / project 'quickstart'.
     Requested epsilon: 0.31 (total after it 1.12)
     Remaining: 0.19 of 1.00
     Cap: allocation 1.00 at delta 1e-05, set by ethics-board on 2026-11-29T10:00:00Z
     Fix: ask the ethics board for a larger allocation, or plan a cheaper release (more noise, fewer steps).
    """

    def __init__(
        self,
        *,
        requested_epsilon: float,
        total_after: float | None,
        remaining: float,
        cap: float | None,
        delta: float | None,
        limit_kind: str,
        dataset: str,
        project: str | None,
        set_by: str | None,
        set_on: str | None,
    ) -> None:
        self.requested_epsilon = requested_epsilon
        self.total_after = total_after
        self.remaining = remaining
        self.cap = cap
        self.delta = delta
        self.limit_kind = limit_kind
        self.dataset = dataset
        self.project = project
        self.set_by = set_by
        self.set_on = set_on
        super().__init__(self._message())

    def _message(self) -> str:
        if self.cap is None:
            return self._missing_limit_message()
        where = f"dataset '{self.dataset}'"
        if self.limit_kind == "project allocation":
            where += f" / project '{self.project}'"
        word = "allocation" if self.limit_kind == "project allocation" else "cap"
        fix = (
            "ask the ethics board for a larger allocation"
            if self.limit_kind == "project allocation"
            else "the site may raise the dataset's cap (set-cap)"
        )
        return (
            f"Refused: this release would exceed the {self.limit_kind} for {where}.\n"
            f" Requested epsilon: {fmt_epsilon(self.requested_epsilon)} "
            f"(total after it {fmt_epsilon(self.total_after)})\n"
            f" Remaining: {fmt_epsilon(self.remaining)} of {fmt_epsilon(self.cap)}\n"
            f" Cap: {word} {fmt_epsilon(self.cap)} at delta {self.delta:g}, "
            f"set by {self.set_by} on {self.set_on}\n"
            f" Fix: {fix}, or plan a cheaper release (more noise, fewer steps)."
        )

    def _missing_limit_message(self) -> str:
        if self.limit_kind == "project allocation":
            rule = f"project '{self.project}' has no allocation on dataset '{self.dataset}'"
            fix = (
                "the ethics board allocates one first: workbench budget allocate --ledger PATH "
                f"--dataset {self.dataset} --project {self.project} --epsilon E --actor A --reason R"
            )
        else:
            rule = f"dataset '{self.dataset}' has no cap"
            fix = (
                "the site sets one first: workbench budget set-cap --ledger PATH "
                f"--dataset {self.dataset} --epsilon E --delta D --actor A --reason R"
            )
        return (
            f"Refused: {rule}, so nothing may be released from it (fail closed).\n"
            f" Requested epsilon: {fmt_epsilon(self.requested_epsilon)}\n"
            f" Fix: {fix}."
        )


def fmt_epsilon(value: float | None) -> str:
    """Two decimals for everyday epsilons, significant digits for tiny ones."""
    if value is None:
        return "n/a"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.2f}"
