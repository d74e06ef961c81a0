"""A job's result: :class:`JobResult`, its JSON record, and writing it.

A finished job writes ``<subdir>/mushin_result.json`` (its status, parameters' cell,
scalar metrics, error), ``<subdir>/mushin_result.npz`` (its array metrics) and one
line of ``.mushin/index.jsonl`` holding the same record.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> r = JobResult(index=(0,), status="done", subdir="0", metrics={"acc": 1.0})
>>> rec = write_job_result(d, d / "0", r)
>>> rec["scalars"], record_problem(rec) is None
({'acc': 1.0}, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._files import (
    append_line,
    atomic_write_text,
    create_temp,
    dumps,
    load_result_arrays,
    rewrite_as,
    unlink_quiet,
    write_npz,
)
from ._layout import INDEX, META_DIR, RESULT_JSON, RESULT_NPZ, RUNNING_JSON, STATES
from ._values import check_stored_metrics

__all__ = ["JobResult", "record_problem", "write_job_result"]


@dataclass
class JobResult:
    """What one job left behind.

    ``index`` is its cell (one position per swept parameter), ``status`` one of
    :data:`STATES`, ``metrics`` what it returned (converted), ``error`` the ``type``,
    ``message`` and ``traceback`` of its failure.

    Examples
    --------
    >>> r = JobResult(index=(1, 0), status="done", metrics={"acc": 0.5}, run_id="r1")
    >>> r.index, r.status, r.metrics
    ((1, 0), 'done', {'acc': 0.5})
    """

    index: tuple[int, ...]
    status: str
    subdir: str = ""
    job_num: int = -1
    metrics: dict[str, Any] | None = None
    returned_none: bool = False
    duration: float = float("nan")
    error: dict[str, str] | None = None
    task_hash: str = ""
    arrays: list[str] = field(default_factory=list)
    finished: float = 0.0
    run_id: str = ""

    def to_json(self, scalars: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON record of this result, with ``scalars`` (the metrics that are not
        arrays; the arrays are in the ``.npz``, named in ``arrays``).

        Examples
        --------
        >>> r = JobResult(index=(0,), status="done", metrics={"acc": 0.5})
        >>> rec = r.to_json({"acc": 0.5})
        >>> rec["index"], rec["scalars"], rec["order"]
        ([0], {'acc': 0.5}, ['acc'])
        """
        return {
            "index": list(self.index),
            "status": self.status,
            "subdir": self.subdir,
            "job_num": self.job_num,
            "scalars": dict(scalars),
            "arrays": list(self.arrays),
            "order": list(self.metrics or {}),
            "returned_none": self.returned_none,
            "duration": self.duration,
            "error": self.error,
            "task_hash": self.task_hash,
            "finished": self.finished,
            "run_id": self.run_id,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], job_dir: Path | None) -> JobResult:
        """The result a JSON record describes. Its array metrics are read from the
        ``.npz`` in ``job_dir`` (raising :class:`DamagedFileError` if it is damaged);
        with ``job_dir=None`` they are left out.

        Examples
        --------
        >>> rec = JobResult(index=(2,), status="done", metrics={"acc": 0.5}).to_json({"acc": 0.5})
        >>> JobResult.from_json(rec, None).metrics
        {'acc': 0.5}
        """
        scalars = d.get("scalars") or {}
        order = d.get("order") or list(scalars)
        arrays = list(d.get("arrays") or [])
        metrics: dict[str, Any] | None = None
        if d.get("status") == "done" and not d.get("returned_none"):
            loaded: dict[str, Any] = {}
            if arrays and job_dir is not None:
                loaded = load_result_arrays(job_dir, arrays)  # DamagedFileError if damaged
            metrics = {k: loaded[k] if k in loaded else scalars.get(k) for k in order}
        duration = d.get("duration")
        return cls(
            index=tuple(d["index"]),
            status=d["status"],
            subdir=d.get("subdir", ""),
            job_num=int(d.get("job_num", -1)),
            metrics=metrics,
            returned_none=bool(d.get("returned_none")),
            duration=float("nan") if duration is None else float(duration),
            error=d.get("error"),
            task_hash=d.get("task_hash", ""),
            arrays=arrays,
            finished=float(d.get("finished") or 0.0),
            run_id=d.get("run_id", ""),
        )


_RECORD_TYPES: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("job_num", int),
    ("run_id", str),
    ("task_hash", str),
    ("returned_none", bool),
    ("scalars", dict),
    ("error", dict),
    ("duration", (int, float)),
    ("finished", (int, float)),
)


def record_problem(rec: Any) -> str | None:
    """What makes ``rec`` (a parsed result file or index line) not a job record;
    None if it is one.

    Examples
    --------
    >>> record_problem({"index": [0], "status": "done", "subdir": "0"}) is None
    True
    >>> record_problem({"index": [0], "status": "won", "subdir": "0"})
    "is not a job record (status 'won')"
    >>> record_problem([1, 2])
    'is not a job record (a JSON list)'
    """
    if not isinstance(rec, dict):
        return f"is not a job record (a JSON {type(rec).__name__})"
    idx = rec.get("index")
    if not isinstance(idx, list) or not all(type(i) is int and i >= 0 for i in idx):
        return "is not a job record (no valid 'index')"
    if rec.get("status") not in STATES:
        return f"is not a job record (status {rec.get('status')!r})"
    sub = rec.get("subdir")
    if not isinstance(sub, str) or not sub:
        return "is not a job record (no 'subdir')"
    for key, types in _RECORD_TYPES:
        v = rec.get(key)
        if v is not None and (not isinstance(v, types) or (types is int and isinstance(v, bool))):
            return f"is not a job record (its {key!r} is a {type(v).__name__})"
    for key in ("arrays", "order"):
        v = rec.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            return f"is not a job record (its {key!r} is damaged)"
    return None


def write_job_result(
    sweep_dir: Path, job_dir: Path, result: JobResult, *, from_marker: bool = False
) -> dict[str, Any]:
    """Persist one job's result in its directory and append it to the index.
    Returns the JSON record.

    ``from_marker``: the job's process writes its own result, and its start marker
    (``mushin_running.json``) becomes the result file (:func:`rewrite_as`: one file
    creation fewer per job); without a marker, the result file is written as usual.

    A metric that has no faithful stored form raises (:func:`check_stored_metrics`)
    before anything is written: the job fails inside its failure boundary, never
    half-written.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> r = JobResult(index=(0,), status="done", subdir="0", metrics={"acc": 0.5, "curve": np.ones(2)})
    >>> rec = write_job_result(d, d / "0", r)
    >>> rec["scalars"], rec["arrays"], sorted(p.name for p in (d / "0").iterdir())
    ({'acc': 0.5}, ['curve'], ['mushin_result.json', 'mushin_result.npz'])
    """
    import numpy as np

    # metrics reach here converted (convert_metrics); a value that is not stored
    # faithfully must fail here, inside the job's failure boundary, never half-written
    check_stored_metrics(result.metrics or {})
    scalars: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    for k, v in (result.metrics or {}).items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        else:
            scalars[k] = v
    result.arrays = list(arrays)
    if arrays:
        job_dir.mkdir(parents=True, exist_ok=True)
        target = job_dir / RESULT_NPZ
        tmp, fd = create_temp(target)
        try:
            with os.fdopen(fd, "wb") as f:
                write_npz(f, arrays)
            os.replace(tmp, target)
        except BaseException:
            unlink_quiet(tmp)
            raise
    record = result.to_json(scalars)
    text = dumps(record)
    if not (from_marker and rewrite_as(job_dir / RUNNING_JSON, job_dir / RESULT_JSON, text.encode("utf-8"))):
        job_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job_dir / RESULT_JSON, text)
    index = sweep_dir / META_DIR / INDEX
    try:
        append_line(index, text)
    except FileNotFoundError:  # the sweep's first record (or its .mushin was removed)
        index.parent.mkdir(parents=True, exist_ok=True)
        append_line(index, text)
    return record
