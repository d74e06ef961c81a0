"""What a sweep logs, and where: quiet cells unless ``verbose=True``.

Quiet (the default): Hydra and the launchers write nothing to the console or the
notebook cell, whatever configured logging before (an ordinary ``hydra_zen.launch``
leaves a console handler on the root logger; so does ``logging.basicConfig``). Each
job's log file (``<job dir>/<job name>.log``) gets the task's log records as before.
Two public means, both scoped to the launch:

- Hydra's own configs, as overrides of the launch: ``hydra/hydra_logging=none`` and
  ``hydra.job_logging.root.handlers=[file]`` (the job log file only);
- a filter, while the sweep runs, on the handlers that were already there: they take
  no record below WARNING from the ``hydra``, ``hydra_plugins``, ``mushin_nb`` and
  ``distributed`` loggers (every Hydra module, launcher plugin, mushin_nb launch and
  Dask cluster logs under one of them); removed after it, when the root logger's
  handlers and level are put back. (Not the levels of those loggers: importing Dask
  sets its own, and a level would also cut those records from the job log files.)

``verbose=True``: Hydra's ``hydra/hydra_logging=default`` and its job logging's
console handler, both to ``sys.stderr``: Hydra's launch lines and the task's log
records (INFO and up) show in the cell or console, and still go to the job log file.

Examples
--------
>>> logging_overrides(False, [])
['hydra/hydra_logging=none', 'hydra.job_logging.root.handlers=[file]']
>>> logging_overrides(True, ["hydra/job_logging=stdout"])[:1]
['hydra/hydra_logging=default']
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["check_verbose", "launch_logging", "logging_overrides"]

# the loggers (and their children) of Hydra, its plugins, mushin_nb (the Dask and Ray
# launches log their lines there) and Dask (a local cluster's start)
_CHATTER = frozenset({"hydra", "hydra_plugins", "mushin_nb", "distributed"})


def check_verbose(verbose: object) -> None:
    """Refuse a ``verbose=`` that is not a bool (before anything runs).

    Examples
    --------
    >>> check_verbose(True)
    >>> check_verbose("yes")
    Traceback (most recent call last):
    ...
    TypeError: verbose='yes': give True (Hydra's lines and the task's log records in the cell or console too) or False (the default: they go to each job's log file only). A task parameter named verbose is swept with overrides=['+verbose=...'].
    """
    if not isinstance(verbose, bool):
        raise TypeError(
            f"verbose={verbose!r}: give True (Hydra's lines and the task's log records in the cell or "
            "console too) or False (the default: they go to each job's log file only). A task parameter "
            "named verbose is swept with overrides=['+verbose=...']."
        )


def _given(overrides: Sequence[str], group: str) -> bool:
    """Whether the user's overrides choose or set Hydra's ``group`` (``hydra_logging``
    or ``job_logging``): theirs then wins, nothing of ours is added."""
    for o in overrides:
        key = o.partition("=")[0].strip().lstrip("+~")
        if key == f"hydra/{group}" or key.startswith(f"hydra.{group}"):
            return True
    return False


def logging_overrides(verbose: bool, overrides: Sequence[str], *, job_logging: bool = True) -> list[str]:
    """The Hydra overrides that make a launch quiet (or verbose), for what the user's
    ``overrides`` leave unset. ``job_logging=False`` (``with_log_configuration=False``)
    leaves the jobs' logging as Hydra configures it (console and file).

    Examples
    --------
    >>> logging_overrides(True, ["+x=1,2"])  # doctest: +NORMALIZE_WHITESPACE
    ['hydra/hydra_logging=default', "hydra.hydra_logging.handlers.console.stream='ext://sys.stderr'",
     'hydra.job_logging.root.handlers=[console,file]',
     "hydra.job_logging.handlers.console.stream='ext://sys.stderr'"]
    >>> logging_overrides(False, ["hydra/hydra_logging=default"], job_logging=False)
    []
    """
    out: list[str] = []
    if not _given(overrides, "hydra_logging"):
        if verbose:  # Hydra's console config, to stderr (a cell's stderr is its log area)
            out += [
                "hydra/hydra_logging=default",
                "hydra.hydra_logging.handlers.console.stream='ext://sys.stderr'",
            ]
        else:
            out.append("hydra/hydra_logging=none")
    if job_logging and not _given(overrides, "job_logging"):
        if verbose:
            out += [
                "hydra.job_logging.root.handlers=[console,file]",
                "hydra.job_logging.handlers.console.stream='ext://sys.stderr'",
            ]
        else:
            # the job's own <job_name>.log only: a console handler on the root logger
            # would also echo every later log line of the notebook's process into its cells
            out.append("hydra.job_logging.root.handlers=[file]")
    return out


def _no_chatter(record: logging.LogRecord) -> bool:
    """False for a record below WARNING from Hydra, its plugins, mushin_nb or Dask."""
    return record.levelno >= logging.WARNING or record.name.partition(".")[0] not in _CHATTER


def _console_handlers() -> list[logging.Handler]:
    """The handlers a record of Hydra, its plugins, mushin_nb or Dask reaches now: the
    root logger's and those of the loggers of ``_CHATTER`` themselves."""
    out: list[logging.Handler] = []
    for lg in [logging.getLogger()] + [logging.getLogger(n) for n in sorted(_CHATTER)]:
        out += [h for h in lg.handlers if h not in out]
    return out


@contextmanager
def launch_logging(verbose: bool, overrides: Sequence[str] = ()) -> Iterator[None]:
    """Around one Hydra launch. Quiet (unless the user's ``overrides`` configure
    Hydra's logging): the handlers already there (on the root logger, e.g. a console
    handler an earlier ``hydra_zen.launch`` or ``logging.basicConfig`` left) take no
    record below WARNING from Hydra, its plugins, mushin_nb or Dask. After it: those
    handlers as they were, and the root logger's handlers and level (Hydra leaves the
    last job's log file handler on the root logger: later log lines of this process
    would be written into a finished sweep's job directory).

    Examples
    --------
    >>> import io
    >>> stream = io.StringIO()
    >>> console = logging.StreamHandler(stream)
    >>> root = logging.getLogger()
    >>> root.addHandler(console)
    >>> with launch_logging(False):
    ...     root.warning("a user's line")
    ...     logging.getLogger("hydra_plugins.some_launcher").warning("a warning")
    ...     logging.getLogger("hydra_plugins.some_launcher").log(logging.ERROR - 30, "chatter")
    >>> root.removeHandler(console)
    >>> print(stream.getvalue(), end="")
    a user's line
    a warning
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filtered = [] if verbose or _given(overrides, "hydra_logging") else _console_handlers()
    for h in filtered:
        h.addFilter(_no_chatter)
    try:
        yield
    finally:
        for h in filtered:
            h.removeFilter(_no_chatter)
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
