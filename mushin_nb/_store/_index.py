"""Reading a sweep's results back: the index, the job directories, the run state.

``.mushin/index.jsonl`` holds one line per finished job, appended as jobs finish. A
reader takes it as the fast path and scans the job directories for what it lacks
(a job killed between its result file and its index line, a deleted or damaged
index). Damage stays local: a damaged line or file costs only its cell.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from mushin_nb._store import write_job_result
>>> d = Path(tempfile.mkdtemp())
>>> for i in range(2):
...     _ = write_job_result(d, d / str(i), JobResult(index=(i,), status="done", subdir=str(i), job_num=i))
>>> [r.index for r in read_records(d)]
[(0,), (1,)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._columns import least_records, paused_gc, read_columns, store_columns
from ._damage import Damage, report_damage
from ._files import DamagedFileError, atomic_write_text, open_nofollow, open_problem, read_json
from ._layout import CANCEL, DAMAGED, INDEX, META_DIR, RESULT_JSON, subdir_escape
from ._markers import find_dead_jobs
from ._records import JobResult, record_problem

__all__ = [
    "archive_index",
    "clear_cancel",
    "is_cancelled",
    "job_dirs_below",
    "read_index",
    "read_index_raw",
    "read_records",
    "set_cancel",
    "unindexed_dirs",
]

_LOST_FIX = "this cell's result is lost; it is marked failed (DamagedResult) and resume=True re-runs it"
_LINE_FIX = (
    "the line is ignored; job directories it may have named are found by scanning them "
    "(`mushin-nb check --repair` rebuilds the index)"
)
_ESCAPE_FIX = "not followed; the cell is marked failed (DamagedResult) and resume=True re-runs it"
_UNPLACED_FIX = (
    "no index line names this job, so its cell is unknown: the cell shows no result and resume=True "
    "re-runs it (`mushin-nb check --repair` moves the file aside)"
)
_SCAN_DEPTH = 4


def _damage_marker(rec: Mapping[str, Any], path: Path, problem: str, fix: str, subdir: str) -> JobResult:
    return JobResult(
        index=tuple(rec["index"]),
        status="failed",
        subdir=subdir,
        job_num=int(rec.get("job_num", -1)),
        error={"type": DAMAGED, "message": f"{path} {problem}: {fix}", "traceback": ""},
        task_hash=str(rec.get("task_hash") or ""),
        finished=float(rec.get("finished") or 0.0),
        run_id=str(rec.get("run_id") or ""),
    )


def _unplaced_marker(subdir: str, path: Path, problem: str) -> JobResult:
    """A damaged result whose cell is unknown: index ``()``; it keeps its job number
    (from the directory name) so that a resume does not reuse that directory."""
    last = subdir.rsplit("/", 1)[-1]
    return JobResult(
        index=(),
        status="failed",
        subdir=subdir,
        job_num=int(last) if last.isdigit() else -1,
        error={"type": DAMAGED, "message": f"{path} {problem}: {_UNPLACED_FIX}", "traceback": ""},
    )


# --------------------------------------------------------------------------- the index


def _parse_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text (an invalid byte at offset {e.start})"
    try:
        rec = json.loads(text)
    except ValueError:
        return None, "is not a JSON record (torn or garbled)"
    problem = record_problem(rec)
    return (None, problem) if problem else (rec, None)


def read_index(
    sweep_dir: Path,
    offset: int = 0,
    *,
    final: bool = False,
    first_line: int | None = None,
    known: Container[tuple[str, str]] = (),
) -> tuple[list[dict[str, Any]], list[Damage], int]:
    """The index's records from byte ``offset`` on (whole lines only), its damaged
    lines, and the new offset. A record naming a directory outside the sweep
    directory is a damaged line whose marker stands for its cell. ``final``: the
    reader does not follow a live writer, so a torn last line is damage too.
    ``first_line``: the number of the line at ``offset`` (damage is told by line number).
    ``known``: the (subdir, status) of records the reader already has (a live run's
    own jobs'): their lines are passed over, unchecked.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from mushin_nb._store import write_job_result
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = write_job_result(d, d / "0", JobResult(index=(0,), status="done", subdir="0"))
    >>> with open(d / ".mushin" / "index.jsonl", "a") as f:
    ...     _ = f.write('garbage\\n{"torn": ')
    >>> records, bad, offset = read_index(d, final=True)
    >>> [r["subdir"] for r in records], [(b.line, b.problem) for b in bad]
    (['0'], [(2, 'is not a JSON record (torn or garbled)'), (3, 'ends in a torn line (a writer stopped in the middle of it)')])
    """
    sweep_dir = Path(sweep_dir)
    p = sweep_dir / META_DIR / INDEX
    bad: list[Damage] = []
    try:
        fd = open_nofollow(p)
    except FileNotFoundError:
        return [], bad, offset
    except OSError as e:
        bad.append(Damage(p, open_problem(e), fix="the job directories are scanned instead", repairable=True))
        return [], bad, offset
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n")
    lines = data[: end + 1].split(b"\n")[:-1] if end >= 0 else []
    base = str(sweep_dir)
    first = first_line if first_line is not None else 1 if offset == 0 else None
    records: list[dict[str, Any]] = []
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        line = None if first is None else first + n
        rec, problem = _parse_record(raw)
        if rec is None:
            bad.append(Damage(p, problem or "", fix=_LINE_FIX, line=line, repairable=True))
            continue
        if (rec["subdir"], rec["status"]) in known:
            continue
        escape, _ = subdir_escape(base, rec["subdir"])
        if escape is not None:
            problem = f"names {escape}"
            marker = _damage_marker(rec, p, problem, _ESCAPE_FIX, "")
            bad.append(Damage(p, problem, fix=_ESCAPE_FIX, line=line, marker=marker, repairable=True))
            continue
        records.append(rec)
    if final and data[end + 1 :].strip():
        line = None if first is None else first + len(lines)
        torn = "ends in a torn line (a writer stopped in the middle of it)"
        bad.append(Damage(p, torn, fix=_LINE_FIX, line=line, repairable=True))
    return records, bad, offset + end + 1 if end >= 0 else offset


def read_index_raw(
    sweep_dir: Path, offset: int = 0, *, known: Container[tuple[str, str]] = ()
) -> tuple[list[dict[str, Any]], int]:
    """Records appended to the index since ``offset`` (bytes), and the new offset.
    Only whole lines are consumed; damaged lines (not UTF-8, not JSON, not a job
    record, or naming a directory outside the sweep directory) are skipped, and so
    are those of records in ``known`` ((subdir, status) pairs the reader has).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from mushin_nb._store import write_job_result
    >>> d = Path(tempfile.mkdtemp())
    >>> read_index_raw(d)
    ([], 0)
    >>> _ = write_job_result(d, d / "0", JobResult(index=(0,), status="done", subdir="0"))
    >>> records, offset = read_index_raw(d)
    >>> len(records), read_index_raw(d, offset), read_index_raw(d, known={("0", "done")})
    (1, ([], ...), ([], ...))
    """
    records, _, new = read_index(sweep_dir, offset, known=known)
    return records, new


def archive_index(sweep_dir: Path) -> int:
    """Start a fresh index for a new (non-resumed) run in an existing directory;
    the old one is kept beside it. Returns how many records it held.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from mushin_nb._store import write_job_result
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = write_job_result(d, d / "0", JobResult(index=(0,), status="done", subdir="0"))
    >>> archive_index(d), sorted(p.name for p in (d / ".mushin").iterdir())
    (1, ['index.0.jsonl'])
    """
    meta = Path(sweep_dir) / META_DIR
    p = meta / INDEX
    if not p.exists():
        return 0
    with open(p, "rb") as f:
        n = sum(1 for _ in f)
    k = 0
    while (meta / f"index.{k}.jsonl").exists():
        k += 1
    os.replace(p, meta / f"index.{k}.jsonl")
    return n


# --------------------------------------------------------------------------- the job directories


def job_dirs_below(sweep_dir: Path, name: str) -> Iterator[str]:
    """The subdirs (``name`` or below it) that hold a result file. Symbolic links are
    not followed; hidden directories and nested sweep directories are skipped; a
    directory with a result file is not looked into further.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> for sub in ("a/0", "a/1", "a/.hidden/2"):
    ...     (d / sub).mkdir(parents=True)
    ...     _ = (d / sub / RESULT_JSON).write_text("{}")
    >>> sorted(job_dirs_below(d, "a"))
    ['a/0', 'a/1']
    """
    stack = [(name, 1)]
    while stack:
        rel, depth = stack.pop()
        try:
            with os.scandir(Path(sweep_dir) / rel) as it:
                entries = list(it)
        except OSError:
            continue
        names = {e.name for e in entries}
        if RESULT_JSON in names:
            yield rel
            continue
        if META_DIR in names or depth >= _SCAN_DEPTH:
            continue
        for e in sorted(entries, key=lambda e: e.name, reverse=True):
            if not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                stack.append((f"{rel}/{e.name}", depth + 1))


def unindexed_dirs(sweep_dir: Path, known: Iterable[str]) -> list[str]:
    """Top-level job directories (not links, not hidden) that no index record names
    (``known``: the subdirs the index names).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> for sub in ("0", "1/a", ".hydra"):
    ...     (d / sub).mkdir(parents=True)
    >>> unindexed_dirs(d, known=["1/a"])
    ['0']
    """
    known_top = {s.split("/", 1)[0] for s in known}
    with os.scandir(sweep_dir) as it:
        return sorted(
            e.name
            for e in it
            if not e.name.startswith(".") and e.name not in known_top and e.is_dir(follow_symlinks=False)
        )


def _scan_unindexed(sweep_dir: Path, by_sub: dict[str, dict[str, Any]], found: list[Damage]) -> bool:
    """Add to ``by_sub`` the records of job directories no index line names (damage to
    ``found``); False if ``sweep_dir`` is not a directory."""
    try:
        missing = unindexed_dirs(sweep_dir, by_sub)
    except (FileNotFoundError, NotADirectoryError):
        return False
    for name in missing:
        for sub in job_dirs_below(sweep_dir, name):
            p = sweep_dir / sub / RESULT_JSON
            rec, problem = read_json(p)
            if problem is None:
                problem = record_problem(rec)
            if problem is None:
                rec["subdir"] = sub
                by_sub[sub] = rec
            else:
                found.append(Damage(p, problem, fix=_UNPLACED_FIX, marker=_unplaced_marker(sub, p, problem)))
    return True


def _place_damaged(out: list[JobResult], found: list[Damage], keep: set[str] | None) -> None:
    """Add to ``out`` the stand-in of each damaged record's cell: only for the runs
    asked for (``keep``), and unless a good record of the same run holds it (the job's
    own directory, found by the scan)."""
    have = {(r.run_id, r.index) for r in out}
    for d in found:
        m = d.marker
        if m is None:
            continue
        if m.index and keep is not None and m.run_id not in keep:
            d.marker = None
        elif m.index and (m.run_id, m.index) in have:
            d.marker = None
            d.fix = "not followed (the job's own directory was found and read; `mushin-nb check --repair` rebuilds the index)"
        else:
            out.append(m)


def read_records(
    sweep_dir: Path,
    *,
    run_ids: Iterable[str] | None = None,
    load_arrays: bool = True,
    damage: list[Damage] | None = None,
) -> list[JobResult]:
    """Every job result in ``sweep_dir``, one per job directory (the latest).

    Reads the index; job directories that are not in it (a job killed between its
    result file and its index line, an index that was deleted or has damaged lines)
    are found by a scan of the sweep directory's entries and read from their own
    result files. Jobs whose process died without a result are failed records.

    Damage stays local: a damaged index line is skipped; a record naming a directory
    outside the sweep directory is not followed; a missing or unreadable array file,
    or such a record, makes its cell a failed record of error type :data:`DAMAGED`
    (resume=True re-runs it); an unreadable result file that no index line names is
    a failed record with index ``()`` (its cell is unknown; it keeps its job number).
    What was damaged is added to ``damage`` if given, else warned about once (one
    RuntimeWarning naming the files).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from mushin_nb._store import write_job_result
    >>> d = Path(tempfile.mkdtemp())
    >>> for i in range(2):
    ...     r = JobResult(index=(i,), status="done", subdir=str(i), job_num=i, metrics={"v": np.ones(2)})
    ...     _ = write_job_result(d, d / str(i), r)
    >>> (d / "1" / "mushin_result.npz").unlink()  # damage: costs only its cell
    >>> found: list = []
    >>> [(r.index, r.status) for r in read_records(d, damage=found)]
    [((0,), 'done'), ((1,), 'failed')]
    >>> found[0].problem
    'is missing'
    """
    with paused_gc():  # many small objects, no cycles
        return _read_records(Path(sweep_dir), run_ids, load_arrays, damage)


def _read_records(
    sweep_dir: Path, run_ids: Iterable[str] | None, load_arrays: bool, damage: list[Damage] | None
) -> list[JobResult]:
    sweep_dir = Path(sweep_dir)
    # the compact form of the index, while fresh, stands for the lines it was made of
    cols = read_columns(sweep_dir)
    start, first = (cols.index_bytes, cols.index_lines + 1) if cols is not None else (0, None)
    raw, found, end = read_index(sweep_dir, start, final=True, first_line=first)
    index_ok = not found  # worth a (new) compact form, if every file reads well
    by_sub: dict[str, Any] = dict(cols.rows) if cols is not None else {}
    for rec in raw:
        by_sub[rec["subdir"]] = rec
    if not _scan_unindexed(sweep_dir, by_sub, found):
        return []
    keep = set(run_ids) if run_ids is not None else None
    out: list[JobResult] = []
    base, index = str(sweep_dir), sweep_dir / META_DIR / INDEX
    for sub, rec in by_sub.items():
        if isinstance(rec, int):  # a row of the compact form
            escape, _ = subdir_escape(base, sub)  # as read_index checks each line
            if escape is not None:
                problem, line = f"names {escape}", cols.lines[rec]  # type: ignore[union-attr]
                marker = _damage_marker(cols.record(rec), index, problem, _ESCAPE_FIX, "")  # type: ignore[union-attr]
                found.append(
                    Damage(index, problem, fix=_ESCAPE_FIX, line=line, marker=marker, repairable=True)
                )
                continue
            if keep is not None and cols.run_id(rec) not in keep:  # type: ignore[union-attr]
                continue
            try:
                out.append(cols.result(rec, sweep_dir, load_arrays))  # type: ignore[union-attr]
            except DamagedFileError as e:
                index_ok = False
                marker = _damage_marker(cols.record(rec), e.path, e.problem, _LOST_FIX, sub)  # type: ignore[union-attr]
                found.append(Damage(e.path, e.problem, fix=_LOST_FIX, marker=marker))
            continue
        if keep is not None and rec.get("run_id", "") not in keep:
            continue  # left by an earlier, replaced run in the same directory
        # the job directory is only needed for array metrics (a Path per job is slow at 10k jobs)
        job_dir = sweep_dir / sub if load_arrays and rec.get("arrays") else None
        try:
            out.append(JobResult.from_json(rec, job_dir))
        except DamagedFileError as e:
            index_ok = False
            marker = _damage_marker(rec, e.path, e.problem, _LOST_FIX, sub)
            found.append(Damage(e.path, e.problem, fix=_LOST_FIX, marker=marker))
    if index_ok and load_arrays and len(raw) >= least_records():  # the next reload reads the compact form
        before = [cols.record(i) for i in range(len(cols.rows))] if cols is not None else []
        store_columns(sweep_dir, before + raw, end, {r.subdir: r.metrics or {} for r in out if r.arrays})
    _place_damaged(out, found, keep)
    # jobs that started and whose process died (no result): failed; resume=True re-runs them
    out.extend(find_dead_jobs(sweep_dir, skip={r.subdir for r in out}, run_ids=keep))
    out.sort(key=lambda r: r.job_num)
    report_damage(sweep_dir, found, damage)
    return out


# --------------------------------------------------------------------------- cancel


def is_cancelled(sweep_dir: Path) -> bool:
    """True while a cancel or stop of the sweep in ``sweep_dir`` is in force.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> is_cancelled(d)
    False
    >>> set_cancel(d, "cancelled by the user"); is_cancelled(d)
    True
    >>> clear_cancel(d); is_cancelled(d)
    False
    """
    return os.path.exists(os.path.join(sweep_dir, META_DIR, CANCEL))  # asked once per job


def set_cancel(sweep_dir: Path, reason: str) -> None:
    """Put a cancel in force (``.mushin/CANCEL`` holding ``reason``): jobs not yet
    started do not run. See :func:`is_cancelled`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = tempfile.mkdtemp()
    >>> set_cancel(d, "stopped: 3 failures")
    >>> (Path(d) / ".mushin" / "CANCEL").read_text()
    'stopped: 3 failures'
    """
    meta = Path(sweep_dir) / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta / CANCEL, reason)


def clear_cancel(sweep_dir: Path) -> None:
    """End a cancel (none in force is fine). See :func:`is_cancelled`.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> clear_cancel(d); is_cancelled(d)
    False
    """
    try:
        os.unlink(Path(sweep_dir) / META_DIR / CANCEL)
    except FileNotFoundError:
        pass
