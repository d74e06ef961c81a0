"""Job start markers, and the jobs whose process died.

A job writes ``mushin_running.json`` in its directory before its task runs; the job's
result is written into that file, which is then renamed to ``mushin_result.json``
(``write_job_result(..., from_marker=True)``: a job creates one file fewer). A marker with no result, left by a process that is gone
(an ``os._exit``, a segfault or an OOM kill of the kernel or of a worker), is that job's
failure: :func:`mushin_nb._store.read_records` reports it as a failed record, so a
reload shows it and ``resume=True`` runs the cell again. A marker of a process on
another host, or of a process still alive, is a job still running (or of unknown
fate): left alone.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> (d / "0").mkdir()
>>> mark_job_started(d / "0", index=(0,), job_num=0, subdir="0", run_id="r1")
>>> marker_dirs(d, set()) == [("0", d / "0")], find_dead_jobs(d)  # this process is alive
(True, [])
>>> clear_job_started(d / "0"); read_job_marker(d / "0") is None
True
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import _proc
from ._files import dumps, parse_json_line
from ._layout import RESULT_JSON, RUNNING_JSON
from ._records import JobResult

__all__ = [
    "clear_job_started",
    "find_dead_jobs",
    "has_result_of",
    "mark_job_started",
    "marker_dirs",
    "read_job_marker",
]

_ME: list[dict[str, Any]] = []  # this process's identity (host, pid, pid start, boot)


def mark_job_started(job_dir: Path, **info: Any) -> None:
    """Write the job's start marker (host, pid, pid start time, boot, started, and
    ``info``: index, job_num, subdir, run_id, task_hash).

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> mark_job_started(d, index=(1, 2), job_num=5, run_id="r1")
    >>> m = read_job_marker(d)
    >>> m["pid"] == os.getpid(), m["index"], m["job_num"]
    (True, [1, 2], 5)
    """
    pid = os.getpid()
    if not _ME or _ME[0]["pid"] != pid:
        _ME[:] = [
            {"host": _proc.hostname(), "pid": pid, "pid_start": _proc.pid_start(pid), "boot": _proc.boot_id()}
        ]
    rec = {**_ME[0], "started": time.time(), **info}
    if "index" in rec:
        rec["index"] = list(rec["index"])
    # one plain write (a job's start pays for one file creation): a reader that sees
    # it partly written skips it, as a marker being written
    fd = os.open(os.path.join(job_dir, RUNNING_JSON), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, dumps(rec).encode("utf-8"))
    finally:
        os.close(fd)


def clear_job_started(job_dir: Path) -> None:
    """Remove the job's start marker (its result is written, or it was interrupted).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> mark_job_started(d, index=(0,))
    >>> clear_job_started(d); clear_job_started(d)  # no error when there is none
    >>> read_job_marker(d) is None
    True
    """
    try:
        os.unlink(os.path.join(job_dir, RUNNING_JSON))
    except FileNotFoundError:
        pass


def read_job_marker(job_dir: Path) -> dict[str, Any] | None:
    """The start marker of a job that has not finished, or None.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> read_job_marker(d) is None
    True
    >>> _ = (d / RUNNING_JSON).write_text('{"pid": ')  # being written: skipped
    >>> read_job_marker(d) is None
    True
    """
    try:
        text = (Path(job_dir) / RUNNING_JSON).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    rec = parse_json_line(text)
    return rec if isinstance(rec, dict) else None


def marker_dirs(sweep_dir: Path, skip: set[str]) -> list[tuple[str, Path]]:
    """(subdir, job dir) of every job directory with a start marker (``skip``:
    subdirs that have a record). Cheap for the usual flat layout: only
    directories without a record are looked into. Symbolic links are not followed.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> for sub in ("0", "1", "2/a"):
    ...     (d / sub).mkdir(parents=True)
    ...     mark_job_started(d / sub, index=(0,))
    >>> [sub for sub, _ in marker_dirs(d, skip={"1"})]
    ['0', '2/a']
    """
    out: list[tuple[str, Path]] = []
    nested = {s.split("/", 1)[0] for s in skip if "/" in s}
    try:
        with os.scandir(sweep_dir) as it:
            names = [e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return out
    for name in sorted(names):
        if name in skip and name not in nested:
            continue
        d = Path(sweep_dir) / name
        if name not in skip and (d / RUNNING_JSON).is_file():
            out.append((name, d))
        for root, dirs, files in os.walk(d, followlinks=False):  # never leaves the sweep directory
            dirs[:] = [x for x in dirs if x != ".hydra" and not os.path.islink(os.path.join(root, x))]
            if root == str(d) or RUNNING_JSON not in files:
                continue
            sub = Path(root).relative_to(sweep_dir).as_posix()
            if sub not in skip:
                out.append((sub, Path(root)))
    return out


def has_result_of(job_dir: Path, marker: Mapping[str, Any]) -> bool:
    """True if ``job_dir`` holds the result of the job that wrote ``marker`` (the same
    ``run_id`` and ``job_num``): it finished, even if its marker is still there.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / RESULT_JSON).write_text('{"run_id": "r1", "job_num": 3}')
    >>> has_result_of(d, {"run_id": "r1", "job_num": 3}), has_result_of(d, {"run_id": "r2", "job_num": 3})
    (True, False)
    """
    try:
        res = parse_json_line((job_dir / RESULT_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False
    if not isinstance(res, dict):
        return False
    return (res.get("run_id"), res.get("job_num")) == (marker.get("run_id"), marker.get("job_num"))


def find_dead_jobs(
    sweep_dir: Path, *, skip: Iterable[str] = (), run_ids: Iterable[str] | None = None
) -> list[JobResult]:
    """A failed record for each job in ``sweep_dir`` that started (its start marker
    is there), has no result, and whose process is gone (on this host).

    ``skip``: subdirs that already have a record; ``run_ids``: only markers of
    these runs.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "0").mkdir()
    >>> mark_job_started(d / "0", index=(0,), job_num=0, subdir="0", run_id="r1")
    >>> find_dead_jobs(d)  # its process (this one) is alive
    []
    >>> m = read_job_marker(d / "0")
    >>> m["pid"] = 2**31 - 1  # a process that is gone
    >>> _ = (d / "0" / RUNNING_JSON).write_text(dumps(m))
    >>> [(r.index, r.status, r.error["type"]) for r in find_dead_jobs(d)]
    [((0,), 'failed', 'ProcessDied')]
    >>> find_dead_jobs(d, run_ids=["r2"])
    []
    """
    sweep_dir = Path(sweep_dir)
    keep = set(run_ids) if run_ids is not None else None
    out: list[JobResult] = []
    for sub, d in marker_dirs(sweep_dir, set(skip)):
        m = read_job_marker(d)
        if m is None or "index" not in m:
            continue  # being written, or not a mushin_nb job
        if keep is not None and m.get("run_id", "") not in keep:
            continue
        if has_result_of(d, m):
            continue  # it finished (stopped after writing its result, before removing the marker)
        try:
            state = _proc.process_state(
                str(m.get("host", "")),
                int(m.get("pid", -1)),
                str(m.get("pid_start", "")),
                str(m.get("boot", "")),
            )
        except (TypeError, ValueError):
            continue
        if state == "dead":
            out.append(_dead_job(sub, d, m))
    return out


def _dead_job(sub: str, d: Path, m: Mapping[str, Any]) -> JobResult:
    """The failed record of the job whose start marker ``m`` in ``d`` outlived its process."""
    import datetime as _dt

    started = float(m.get("started", 0.0) or 0.0)
    when = _dt.datetime.fromtimestamp(started).isoformat(timespec="seconds") if started else "?"
    logs = sorted(d.glob("*.log"))
    see = str(logs[0]) if logs else str(d)
    msg = (
        f"the process running this job died (pid {m.get('pid')} on {m.get('host')}, job started "
        f"{when}): exit/signal unknown (os._exit, a crash such as a segfault, or a kill such as the "
        f"out-of-memory killer); see {see}. resume=True runs it again."
    )
    return JobResult(
        index=tuple(int(i) for i in m["index"]),
        status="failed",
        subdir=sub,
        job_num=int(m.get("job_num", -1)),
        error={"type": "ProcessDied", "message": msg, "traceback": ""},
        task_hash=str(m.get("task_hash", "")),
        finished=started,
        run_id=str(m.get("run_id", "")),
    )
