"""What a sweep logs, and where: quiet cells unless ``verbose=True``.

Quiet (the default): Hydra and the launchers write nothing to the console or the
notebook cell, whatever configured logging before (an ordinary ``hydra_zen.launch``
leaves a console handler on the root logger; so does ``logging.basicConfig``). Each
job's log file (``<job dir>/<job name>.log``) gets the task's log records as before.
Two public means, both scoped to the launch:

- Hydra's own configs, as overrides of the launch: ``hydra/hydra_logging=none`` and
  ``hydra.job_logging.root.handlers=[file]`` (the job log file only);
- the levels of the ``hydra`` and ``hydra_plugins`` loggers (every Hydra module and
  launcher plugin logs under one of them) at WARNING while the sweep runs, put back
  after it with the root logger's handlers and level.

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

# the parents of every logger of Hydra (hydra.*) and of its plugins (hydra_plugins.*)
_HYDRA_LOGGERS = ("hydra", "hydra_plugins")


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


@contextmanager
def launch_logging(verbose: bool, overrides: Sequence[str] = ()) -> Iterator[None]:
    """Around one Hydra launch: the ``hydra`` / ``hydra_plugins`` loggers at WARNING
    (quiet) or INFO (verbose), unless the user's ``overrides`` configure Hydra's
    logging; after it, those levels and the root logger's handlers and level as
    they were (Hydra leaves the last job's log file handler on the root logger: later
    log lines of this process would be written into a finished sweep's job directory).

    Examples
    --------
    >>> with launch_logging(False):
    ...     logging.getLogger("hydra_plugins.x").isEnabledFor(logging.INFO)
    False
    >>> logging.getLogger("hydra").level == logging.NOTSET
    True
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    scoped = [] if _given(overrides, "hydra_logging") else [logging.getLogger(n) for n in _HYDRA_LOGGERS]
    levels = [lg.level for lg in scoped]
    for lg in scoped:
        lg.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        for lg, lv in zip(scoped, levels):
            lg.setLevel(lv)
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
                h.close()
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
