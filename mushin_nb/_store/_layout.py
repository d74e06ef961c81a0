"""The names of a sweep directory's files, and where a job directory may be.

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> subdir_escape(d, "0")
(None, ['0'])
>>> job_dir_within(d, "0").name
'0'
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "CANCEL",
    "DAMAGED",
    "ERROR_TXT",
    "INDEX",
    "MANIFEST",
    "META_DIR",
    "RESULT_JSON",
    "RESULT_NPZ",
    "RUNNING_JSON",
    "RUNS_DIR",
    "STATES",
    "job_dir_within",
    "subdir_escape",
]

MANIFEST = "manifest.json"
"""The sweep's manifest under ``META_DIR``: its runs, each run's grid, the task hash."""
INDEX = "index.jsonl"
"""The index under ``META_DIR``: one JSON line per finished job, appended as jobs finish."""
CANCEL = "CANCEL"
"""Present under ``META_DIR`` while a cancel (or ``on_error="stop"``) is in force."""
META_DIR = ".mushin"
"""mushin_nb's own directory inside a sweep directory."""
RESULT_JSON = "mushin_result.json"
"""A job's result record in its job directory (status, scalars, error)."""
RESULT_NPZ = "mushin_result.npz"
"""A job's array metrics in its job directory (read with ``allow_pickle=False``)."""
ERROR_TXT = "mushin_error.txt"
"""The traceback of a failed job, in its job directory."""
RUNS_DIR = "runs"
"""Write-once copies of each run's manifest entry under ``META_DIR`` (to rebuild the manifest)."""
#: a job's start marker, present while it runs (see :func:`mushin_nb._store.mark_job_started`)
RUNNING_JSON = "mushin_running.json"
"""A job's start marker (host, pid): left behind only by a process that died in the job."""
#: ``JobResult.error["type"]`` of a cell whose stored result is damaged
DAMAGED = "DamagedResult"
"""The error type of a cell whose stored result is damaged (``resume=True`` re-runs it)."""

#: the states of a cell of a sweep, in the order a cell goes through them
STATES = ("pending", "running", "done", "failed", "cancelled")
"""The states of a cell, in display order: the one set every surface uses."""


def job_dir_within(sweep_dir: Path | str, subdir: str) -> Path:
    """``sweep_dir / subdir``, checked to stay inside ``sweep_dir``.

    Raises ValueError when ``subdir`` is not a relative path below the sweep
    directory: empty, absolute, holding ``..``, or passing through a symbolic link
    that resolves outside ``sweep_dir``. Only ``lstat`` of each component below
    ``sweep_dir`` is done to find out (a link is resolved, never entered).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> job_dir_within(d, "3").name
    '3'
    >>> job_dir_within(d, "../x")
    Traceback (most recent call last):
    ...
    ValueError: the job directory '../x' contains '..', leaving the sweep directory ...
    """
    problem, parts = subdir_escape(str(sweep_dir), subdir)
    if problem is not None:
        raise ValueError(problem)
    return Path(sweep_dir).joinpath(*parts)


def subdir_escape(base: str, subdir: Any) -> tuple[str | None, list[str]]:
    """Why ``subdir`` leaves the sweep directory ``base`` (None if it does not), and
    its parts. Plain string work plus one ``lstat`` per part: this runs once per index
    record.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> subdir_escape(d, "a/./b")
    (None, ['a', 'b'])
    >>> subdir_escape(d, "/etc")[0]
    "the job directory '/etc' is an absolute path, not one below the sweep directory ..."
    """
    if not isinstance(subdir, str) or not subdir or "\x00" in subdir:
        return f"the job directory {subdir!r} is not a path below the sweep directory {base}", []
    if subdir.startswith("/"):
        return (
            f"the job directory {subdir!r} is an absolute path, not one below the sweep directory {base}",
            [],
        )
    parts = [p for p in subdir.split("/") if p and p != "."]
    if ".." in parts:
        return f"the job directory {subdir!r} contains '..', leaving the sweep directory {base}", []
    if not parts:
        return f"the job directory {subdir!r} is the sweep directory {base} itself, not one below it", []
    cur = base
    root = ""
    for part in parts:
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except OSError:
            break  # not there: nothing to follow
        if stat.S_ISLNK(st.st_mode):
            root = root or os.path.realpath(base)
            real = os.path.realpath(cur)
            if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
                return (
                    f"the job directory {subdir!r} is a symbolic link to {real}, outside the sweep "
                    f"directory {base}",
                    [],
                )
    return None, parts
