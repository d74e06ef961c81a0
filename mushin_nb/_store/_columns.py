"""The compact, columnar form of a sweep's index: a reload that costs the bytes it reads.

``.mushin/columns.npz`` holds what the first ``index_bytes`` bytes of the index say (one
row per job directory: its cell, status, job number, run, scalars, error) and the jobs'
array metrics stacked per metric. It is written when a sweep ends (and by a reload that
had to read every job's files), and used by :func:`~mushin_nb._store.read_records` only
while it is fresh:

- the index's first ``index_bytes`` bytes hash to ``index_hash`` (lines appended since are
  read as usual; an index edited, repaired or replaced makes the whole form unused);
- a job's ``.npz`` is used from the compact form only if its size, modification time and
  inode are those recorded; else that job's own files are read (and their damage told) as
  without the compact form.

The per-job files stay the source of truth: deleting ``columns.npz`` changes nothing but
the time a reload takes. Nothing is pickled (``allow_pickle=False``).

Examples
--------
>>> import tempfile
>>> import numpy as np
>>> from pathlib import Path
>>> from mushin_nb._store import JobResult, write_job_result, read_records
>>> d = Path(tempfile.mkdtemp())
>>> for i in range(3):
...     r = JobResult(index=(i,), status="done", subdir=str(i), job_num=i, metrics={"y": i, "v": np.ones(2) * i})
...     _ = write_job_result(d, d / str(i), r)
>>> save_columns(d, min_records=1)
True
>>> cols = read_columns(d)
>>> [r.metrics["y"] for r in (cols.result(cols.rows[s], d, True) for s in cols.rows)]
[0, 1, 2]
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import atomic_write_bytes, open_nofollow
from ._layout import INDEX, META_DIR, RESULT_NPZ
from ._records import JobResult

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "COLUMNS",
    "MIN_RECORDS",
    "Columns",
    "least_records",
    "paused_gc",
    "read_columns",
    "save_columns",
    "store_columns",
]

COLUMNS = "columns.npz"
"""The compact form of the index under ``META_DIR`` (a cache: see the module's docstring)."""
MIN_RECORDS = 64
"""Fewer index records than this are read faster from the index itself: no compact form
(the environment variable ``MUSHIN_NB_COLUMNS_MIN`` sets another number, e.g. for tests)."""
_FORMAT = 1
_STR_FIELDS = ("subdir", "status", "run_id", "task_hash")


@contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cycle collector paused while many objects that hold no cycles are made (a
    reload of 10k jobs spends half its time in it otherwise); nested uses are fine.

    Examples
    --------
    >>> with paused_gc():
    ...     rows = [{"i": i} for i in range(10)]
    >>> gc.isenabled()
    True
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _index_prefix(sweep_dir: Path, length: int | None = None) -> bytes | None:
    try:
        fd = open_nofollow(Path(sweep_dir) / META_DIR / INDEX)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read() if length is None else f.read(length)
    return data


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _npz_stat(path: str) -> tuple[int, int, int]:
    try:
        st = os.lstat(path)
    except OSError:
        return (-1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class Columns:
    """A fresh compact form (see :func:`read_columns`): ``rows`` maps each job directory
    named by the index's first ``index_bytes`` bytes (``index_lines`` lines) to its row."""

    def __init__(self, meta: dict[str, Any], z: Mapping[str, np.ndarray]) -> None:
        import numpy as np

        self.index_bytes = int(meta["index_bytes"])
        self.index_lines = int(meta["index_lines"])
        n = int(meta["records"])
        col = {
            k: z[k].tolist()
            for k in (
                "sub",
                "status",
                "job_num",
                "run_id",
                "task_hash",
                "finished",
                "duration",
                "returned_none",
                "error",
                "order_id",
                "arrays_id",
            )
        }
        self._col = col
        lens = z["index_len"]
        if n and (lens == lens[0]).all():  # one grid: every index has the same length
            self._index = list(map(tuple, z["index_flat"].reshape(n, int(lens[0])).tolist()))
        else:
            flat, starts = z["index_flat"].tolist(), np.concatenate([[0], np.cumsum(lens)]).tolist()
            self._index = [tuple(flat[starts[i] : starts[i + 1]]) for i in range(n)]
        self._orders: list[list[str]] = meta["orders"]
        self._arrays: list[list[str]] = meta["arrays_lists"]
        self._stat = [tuple(s) for s in z["npz_stat"].tolist()]
        self._scalars: dict[str, tuple[list[bool], list[Any], bool]] = {}
        for k, (name, kind) in enumerate(meta["scalars"]):
            vals = z[f"s{k}"].tolist()
            self._scalars[name] = (z[f"h{k}"].tolist(), vals, kind == "j")
        # an array metric: its stacks (one per dtype and shape), and each row's stack and place
        groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for k, name in enumerate(meta["stacked"]):
            groups.setdefault(name, []).append((z[f"a{k}"], z[f"r{k}"]))
        self._stacks: dict[str, tuple[list[np.ndarray], list[int], list[int]]] = {}
        for name, gs in groups.items():
            which, place = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
            for g, (_, rows) in enumerate(gs):
                at = rows >= 0
                which[at], place[at] = g, rows[at]
            self._stacks[name] = ([a for a, _ in gs], which.tolist(), place.tolist())
        self._plans: dict[tuple[int, int, bool], list[tuple[str, int, Any, Any, bool]]] = {}
        # rows whose every array metric is in a stack
        aids = z["arrays_id"]
        fresh = np.ones(n, dtype=bool)
        for aid, names in enumerate(self._arrays):
            at = aids == aid
            for name in names:
                st = self._stacks.get(name)
                fresh &= ~at | (False if st is None else np.asarray(st[1]) >= 0)
        self._fresh = fresh.tolist()
        self.rows = {s: i for i, s in enumerate(col["sub"])}
        self.lines = z["line"].tolist()  # each row's line of the index (1 is the first)

    def run_id(self, row: int) -> str:
        """The run that wrote row ``row``."""
        return self._col["run_id"][row]

    def record(self, row: int) -> dict[str, Any]:
        """Row ``row`` as the index line it was made of (its JSON record)."""
        c = self._col
        scalars = {}
        for name, (has, vals, js) in self._scalars.items():
            if has[row]:
                scalars[name] = json.loads(vals[row]) if js else vals[row]
        return {
            "index": list(self._index[row]),
            "status": c["status"][row],
            "subdir": c["sub"][row],
            "job_num": c["job_num"][row],
            "scalars": scalars,
            "arrays": list(self._arrays[c["arrays_id"][row]]),
            "order": list(self._orders[c["order_id"][row]]),
            "returned_none": c["returned_none"][row],
            "duration": c["duration"][row],
            "error": json.loads(c["error"][row]),
            "task_hash": c["task_hash"][row],
            "finished": c["finished"][row],
            "run_id": c["run_id"][row],
        }

    def _plan(self, oid: int, aid: int, load_arrays: bool) -> list[tuple[str, int, Any, Any, bool]]:
        """Where each metric of rows with order ``oid`` and arrays ``aid`` comes from:
        (name, 1: a stack / 2: a scalar column / 0: None, column, rows or values, JSON)."""
        key = (oid, aid, load_arrays)
        plan = self._plans.get(key)
        if plan is None:
            arrays = set(self._arrays[aid])
            plan = []
            for name in self._orders[oid]:
                if name in arrays:
                    st = self._stacks.get(name)
                    plan.append(
                        (name, 1, st, None, False) if load_arrays and st else (name, 0, None, None, False)
                    )
                elif name in self._scalars:
                    has, vals, js = self._scalars[name]
                    plan.append((name, 2, has, vals, js))
                else:
                    plan.append((name, 0, None, None, False))
            self._plans[key] = plan
        return plan

    def result(self, row: int, sweep_dir: Path, load_arrays: bool) -> JobResult:
        """The :class:`JobResult` of row ``row``, as ``JobResult.from_json`` makes it of its
        record: array metrics from the compact form if its job's ``.npz`` is unchanged,
        else read from that file (raising :class:`DamagedFileError` if it is damaged)."""
        c = self._col
        aid = c["arrays_id"][row]
        arrays = self._arrays[aid]
        status = c["status"][row]
        done = status == "done" and not c["returned_none"][row]
        metrics = None
        if done:
            if arrays and load_arrays:
                sub = c["sub"][row]
                if not self._fresh[row] or _npz_stat(f"{sweep_dir}/{sub}/{RESULT_NPZ}") != self._stat[row]:
                    return JobResult.from_json(self.record(row), Path(sweep_dir) / sub)
            metrics = {}
            for name, kind, a, b, js in self._plan(c["order_id"][row], aid, load_arrays):
                if kind == 1:
                    metrics[name] = a[0][a[1][row]][a[2][row], ...]
                elif kind == 2 and a[row]:
                    metrics[name] = json.loads(b[row]) if js else b[row]
                else:
                    metrics[name] = None
        err = c["error"][row]
        return JobResult(
            index=self._index[row],
            status=status,
            subdir=c["sub"][row],
            job_num=c["job_num"][row],
            metrics=metrics,
            returned_none=c["returned_none"][row],
            duration=c["duration"][row],
            error=None if err == "null" else json.loads(err),
            task_hash=c["task_hash"][row],
            arrays=list(arrays),
            finished=c["finished"][row],
            run_id=c["run_id"][row],
        )


def read_columns(sweep_dir: Path) -> Columns | None:
    """The compact form of ``sweep_dir``'s index if it is there and fresh (the index's
    first ``index_bytes`` bytes are those it was made of); else None."""
    import numpy as np

    p = Path(sweep_dir) / META_DIR / COLUMNS
    try:
        fd = open_nofollow(p)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            if meta.get("format") != _FORMAT:
                return None
            prefix = _index_prefix(Path(sweep_dir), int(meta["index_bytes"]))
            if prefix is None or len(prefix) != meta["index_bytes"] or _digest(prefix) != meta["index_hash"]:
                return None
            return Columns(meta, {k: z[k] for k in z.files})
    except Exception:  # damaged or from another version: the index is read instead
        return None


def _scalar_kind(values: list[Any]) -> str:
    """How a scalar metric's values are stored: one numpy column of their one type, or
    their JSON text (mixed types, ints beyond int64, text ending in NUL, lists...)."""
    types = {type(v) for v in values}
    if types == {bool}:
        return "b"
    if types == {int} and all(-(2**63) <= v < 2**63 for v in values):
        return "i"
    if types == {float}:
        return "f"
    if types == {str} and not any(v.endswith("\x00") for v in values):
        return "U"
    return "j"


def _plain(rec: Mapping[str, Any]) -> bool:
    """A record whose every field the columns hold as its JSON gave it."""
    return (
        all(isinstance(rec.get(k, ""), str) for k in _STR_FIELDS)
        and isinstance(rec.get("scalars") or {}, dict)
        and isinstance(rec.get("job_num", -1), int)
        and isinstance(rec.get("returned_none", False), bool)
    )


def least_records() -> int:
    """:data:`MIN_RECORDS`, or the number in ``MUSHIN_NB_COLUMNS_MIN``."""
    try:
        return int(os.environ.get("MUSHIN_NB_COLUMNS_MIN", MIN_RECORDS))
    except ValueError:
        return MIN_RECORDS


def store_columns(
    sweep_dir: Path,
    records: list[dict[str, Any]],
    index_bytes: int,
    arrays: Mapping[str, Mapping[str, Any]],
    *,
    min_records: int | None = None,
) -> bool:
    """Write the compact form of the index's first ``index_bytes`` bytes, which hold the
    (undamaged) ``records``; ``arrays`` maps a job's subdir to its array metrics (jobs
    without an entry are read from their ``.npz`` when reloaded). Returns whether it was
    written (nothing is for fewer than ``min_records`` records, or odd records)."""
    recs = records
    if len({r["subdir"] for r in recs}) != len(recs):
        return False  # a job directory named by two lines: read from the index
    if len(recs) < (least_records() if min_records is None else min_records) or not all(
        _plain(r) for r in recs
    ):
        return False
    prefix = _index_prefix(sweep_dir, index_bytes)
    if prefix is None or len(prefix) != index_bytes:
        return False
    # each record's line: the records are the prefix's lines that are not blank (no damage)
    lines = [n + 1 for n, raw in enumerate(prefix.split(b"\n")[:-1]) if raw.strip()]
    if len(lines) != len(recs):
        return False
    data = _encode(Path(sweep_dir), recs, arrays, prefix, lines)
    try:
        atomic_write_bytes(Path(sweep_dir) / META_DIR / COLUMNS, data)
    except OSError:  # a read-only sweep directory: reloads read the index
        return False
    return True


def _table(lists: Iterable[list[str]]) -> tuple[list[list[str]], list[int]]:
    table: dict[tuple[str, ...], int] = {}
    ids = [table.setdefault(tuple(x), len(table)) for x in lists]
    return [list(t) for t in table], ids


def _encode(
    sweep_dir: Path,
    recs: list[dict[str, Any]],
    arrays: Mapping[str, Mapping[str, Any]],
    prefix: bytes,
    lines: list[int],
) -> bytes:
    import numpy as np

    n = len(recs)
    orders, order_id = _table(r.get("order") or list(r.get("scalars") or {}) for r in recs)
    arrays_lists, arrays_id = _table(list(r.get("arrays") or []) for r in recs)
    out: dict[str, np.ndarray] = {
        "sub": np.array([r["subdir"] for r in recs], dtype=str),
        "status": np.array([r["status"] for r in recs], dtype=str),
        "job_num": np.array([int(r.get("job_num", -1)) for r in recs], dtype=np.int64),
        "run_id": np.array([r.get("run_id", "") for r in recs], dtype=str),
        "task_hash": np.array([r.get("task_hash", "") for r in recs], dtype=str),
        "finished": np.array([float(r.get("finished") or 0.0) for r in recs], dtype=np.float64),
        "duration": np.array([np.nan if r.get("duration") is None else float(r["duration"]) for r in recs]),
        "returned_none": np.array([bool(r.get("returned_none")) for r in recs], dtype=bool),
        "error": np.array([json.dumps(r.get("error"), ensure_ascii=False) for r in recs], dtype=str),
        "order_id": np.array(order_id, dtype=np.int32),
        "arrays_id": np.array(arrays_id, dtype=np.int32),
        "index_len": np.array([len(r["index"]) for r in recs], dtype=np.int16),
        "index_flat": np.array([i for r in recs for i in r["index"]], dtype=np.int64),
        "line": np.array(lines, dtype=np.int64),
    }
    names: dict[str, None] = {}
    for r in recs:
        names.update(dict.fromkeys(r.get("scalars") or {}))
    scalars = []
    for k, name in enumerate(names):
        has = [name in (r.get("scalars") or {}) for r in recs]
        vals = [(r.get("scalars") or {}).get(name) for r in recs]
        kind = _scalar_kind([v for v, h in zip(vals, has) if h])
        if kind == "j":
            col = np.array([json.dumps(v, ensure_ascii=False) for v in vals], dtype=str)
        else:
            fill = {"b": False, "i": 0, "f": 0.0, "U": ""}[kind]
            col = np.array(
                [v if h else fill for v, h in zip(vals, has)],
                dtype={"b": bool, "i": np.int64, "f": np.float64, "U": str}[kind],
            )
        out[f"s{k}"], out[f"h{k}"] = col, np.array(has, dtype=bool)
        scalars.append((name, kind))
    stacked, stat = _stack_arrays(sweep_dir, recs, arrays, out)
    out["npz_stat"] = np.array(stat, dtype=np.int64).reshape(n, 3)
    meta = {
        "format": _FORMAT,
        "index_bytes": len(prefix),
        "index_lines": prefix.count(b"\n"),
        "index_hash": _digest(prefix),
        "records": n,
        "orders": orders,
        "arrays_lists": arrays_lists,
        "scalars": scalars,
        "stacked": stacked,
    }
    out["meta"] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **out)  # pyright: ignore[reportArgumentType]  (numpy's stub types **kwds as its own options)
    return buf.getvalue()


def _stack_arrays(
    sweep_dir: Path,
    recs: list[dict[str, Any]],
    arrays: Mapping[str, Mapping[str, Any]],
    out: dict[str, np.ndarray],
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """The known values of each array metric stacked, one stack per dtype and shape (``a<k>``,
    with ``r<k>``: each row's place in it, -1 if none); each row's ``.npz`` stat."""
    import numpy as np

    values: dict[str, list[tuple[int, np.ndarray]]] = {}
    stat: list[tuple[int, int, int]] = []
    for i, r in enumerate(recs):
        names = list(r.get("arrays") or [])
        known = arrays.get(r["subdir"]) or {}
        have = names and all(isinstance(known.get(k), np.ndarray) for k in names)
        st = _npz_stat(f"{sweep_dir}/{r['subdir']}/{RESULT_NPZ}") if have else (-1, -1, -1)
        stat.append(st)
        if have and st[0] >= 0:
            for k in names:
                values.setdefault(k, []).append((i, known[k]))
    stacked = []
    for name, vals in values.items():
        kinds: dict[tuple[Any, ...], list[tuple[int, np.ndarray]]] = {}
        for i, v in vals:
            kinds.setdefault((v.dtype.str, v.shape), []).append((i, v))
        for group in kinds.values():
            k = len(stacked)
            rows = np.full(len(recs), -1, dtype=np.int64)
            rows[[i for i, _ in group]] = np.arange(len(group))
            out[f"a{k}"], out[f"r{k}"] = np.stack([v for _, v in group]), rows
            stacked.append(name)
    return stacked, stat


def save_columns(
    sweep_dir: Path, results: Iterable[JobResult] = (), *, min_records: int | None = None
) -> bool:
    """Write the compact form of ``sweep_dir``'s index as it is now (when a sweep ends),
    taking the array metrics of ``results`` (in memory) instead of reading their files.
    Nothing is written if the index has damage. Returns whether it was written."""
    from ._index import read_index

    try:
        least = least_records() if min_records is None else min_records
        raw, bad, end = read_index(Path(sweep_dir), final=True)
        if bad or len(raw) < least:
            return False
        arrays = {}
        for r in results:
            if r.metrics and r.arrays:
                arrays[r.subdir] = {k: r.metrics.get(k) for k in r.arrays}
        return store_columns(Path(sweep_dir), raw, end, arrays, min_records=least)
    except Exception:  # a cache: a reload reads the index instead
        return False
