"""The sweep directory on disk.

Layout (Hydra's own files are untouched and still readable by other tools)::

    <sweep dir>/
      multirun.yaml                  Hydra's
      .mushin/manifest.json          the sweep: parameters and values in order, task, hash
      .mushin/index.jsonl            one line per finished job (appended as jobs finish)
      .mushin/CANCEL                 present while a cancel / stop is in force
      <subdir>/.hydra/...            Hydra's per-job config, hydra and overrides files
      <subdir>/mushin_result.json    the job's status, parameters, scalar metrics, error
      <subdir>/mushin_result.npz     the job's array metrics (loaded with allow_pickle=False)
      <subdir>/mushin_error.txt      the traceback of a failed job

Nothing here is pickled: scalars and strings are JSON, arrays are ``.npz``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
INDEX = "index.jsonl"
CANCEL = "CANCEL"
META_DIR = ".mushin"
RESULT_JSON = "mushin_result.json"
RESULT_NPZ = "mushin_result.npz"
ERROR_TXT = "mushin_error.txt"

STATES = ("pending", "running", "done", "failed", "cancelled")


@dataclass
class JobResult:
    """What one job left behind."""

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
        scalars = d.get("scalars") or {}
        order = d.get("order") or list(scalars)
        arrays = list(d.get("arrays") or [])
        metrics: dict[str, Any] | None = None
        if d.get("status") == "done" and not d.get("returned_none"):
            loaded: dict[str, Any] = {}
            if arrays and job_dir is not None:
                import numpy as np

                with np.load(job_dir / RESULT_NPZ, allow_pickle=False) as z:
                    loaded = {k: z[k] for k in arrays}
            metrics = {k: loaded[k] if k in loaded else scalars.get(k) for k in order}
        return cls(
            index=tuple(d["index"]),
            status=d["status"],
            subdir=d.get("subdir", ""),
            job_num=int(d.get("job_num", -1)),
            metrics=metrics,
            returned_none=bool(d.get("returned_none")),
            duration=float(d.get("duration", float("nan"))),
            error=d.get("error"),
            task_hash=d.get("task_hash", ""),
            arrays=arrays,
            finished=float(d.get("finished", 0.0)),
            run_id=d.get("run_id", ""),
        )


# --------------------------------------------------------------------------- values


def to_numpy_or_scalar(value: Any, *, name: str) -> Any:
    """A metric value -> a JSON scalar (bool/int/float/str/None) or a numpy array.

    Tensors (anything with ``detach``/``cpu``/``numpy``) become numpy; a 1-element
    list is unwrapped (rai mushin does the same).
    """
    import numpy as np

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], (list, tuple)):
        return to_numpy_or_scalar(value[0], name=name)
    if isinstance(value, np.generic):
        return value.item()
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists
        raise TypeError(f"metric {name!r}: cannot be turned into an array ({e})") from None
    if arr.dtype == object:
        raise TypeError(
            f"metric {name!r}: a {type(value).__name__} holding Python objects cannot be stored "
            "safely (no pickle); return numbers, strings, or arrays/tensors of them."
        )
    if arr.ndim == 0:
        return arr.item()
    return arr


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write on an O_APPEND descriptor (atomic
    with respect to other writers on a local file system)."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- job side


def write_job_result(sweep_dir: Path, job_dir: Path, result: JobResult) -> dict[str, Any]:
    """Persist one job's result in its directory and append it to the index.
    Returns the JSON record."""
    import numpy as np

    scalars: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    for k, v in (result.metrics or {}).items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        else:
            scalars[k] = v
    result.arrays = list(arrays)
    job_dir.mkdir(parents=True, exist_ok=True)
    if arrays:
        fd, tmp = tempfile.mkstemp(dir=job_dir, prefix=".result.", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, job_dir / RESULT_NPZ)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    record = result.to_json(scalars)
    text = dumps(record)
    atomic_write_text(job_dir / RESULT_JSON, text)
    meta = sweep_dir / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    append_line(meta / INDEX, text)
    return record


# --------------------------------------------------------------------------- sweep side


def write_manifest(sweep_dir: Path, manifest: Mapping[str, Any]) -> None:
    meta = Path(sweep_dir) / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta / MANIFEST, dumps(manifest))


def read_manifest(sweep_dir: Path) -> dict[str, Any] | None:
    p = Path(sweep_dir) / META_DIR / MANIFEST
    if not p.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def _parse_line(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except ValueError:  # a torn last line of a killed writer
        return None


def read_index_raw(sweep_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records appended to the index since ``offset`` (bytes), and the new offset.
    Only whole lines are consumed."""
    p = Path(sweep_dir) / META_DIR / INDEX
    try:
        with open(p, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out = []
    for line in data[: end + 1].decode("utf-8").splitlines():
        if line.strip():
            rec = _parse_line(line)
            if rec is not None:
                out.append(rec)
    return out, offset + end + 1


def _scan(sweep_dir: Path, skip: set[str]) -> list[dict[str, Any]]:
    out = []
    for p in sorted(Path(sweep_dir).glob(f"**/{RESULT_JSON}")):
        sub = p.parent.relative_to(sweep_dir).as_posix()
        if sub in skip:
            continue
        rec = _parse_line(p.read_text(encoding="utf-8"))
        if rec is not None:
            rec["subdir"] = sub
            out.append(rec)
    return out


def read_records(
    sweep_dir: Path, *, run_ids: Iterable[str] | None = None, load_arrays: bool = True
) -> list[JobResult]:
    """Every job result in ``sweep_dir``, one per job directory (the latest).

    Reads the index; job directories that are not in it (a job killed between its
    result file and its index line, or an index that was deleted) are found by a
    scan of the sweep directory's entries and read from their own result files.
    """
    sweep_dir = Path(sweep_dir)
    raw, _ = read_index_raw(sweep_dir)
    by_sub: dict[str, dict[str, Any]] = {}
    for rec in raw:
        by_sub[rec.get("subdir", "")] = rec
    known_top = {s.split("/", 1)[0] for s in by_sub}
    missing: list[str] = []
    try:
        with os.scandir(sweep_dir) as it:
            for e in it:
                if e.is_dir() and not e.name.startswith(".") and e.name not in known_top:
                    missing.append(e.name)
    except FileNotFoundError:
        return []
    for name in missing:
        d = sweep_dir / name
        if (d / RESULT_JSON).exists() or any(d.glob(f"**/{RESULT_JSON}")):
            for rec in _scan(d, set()):
                rec["subdir"] = f"{name}/{rec['subdir']}" if rec["subdir"] not in ("", ".") else name
                by_sub[rec["subdir"]] = rec
    keep = set(run_ids) if run_ids is not None else None
    out = []
    for sub, rec in by_sub.items():
        if keep is not None and rec.get("run_id", "") not in keep:
            continue  # left by an earlier, replaced run in the same directory
        # the job directory is only needed for array metrics (a Path per job is slow at 10k jobs)
        job_dir = sweep_dir / sub if load_arrays and rec.get("arrays") else None
        out.append(JobResult.from_json(rec, job_dir))
    out.sort(key=lambda r: r.job_num)
    return out


def is_cancelled(sweep_dir: Path) -> bool:
    return (Path(sweep_dir) / META_DIR / CANCEL).exists()


def set_cancel(sweep_dir: Path, reason: str) -> None:
    meta = Path(sweep_dir) / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta / CANCEL, reason)


def clear_cancel(sweep_dir: Path) -> None:
    try:
        os.unlink(Path(sweep_dir) / META_DIR / CANCEL)
    except FileNotFoundError:
        pass


def archive_index(sweep_dir: Path) -> int:
    """Start a fresh index for a new (non-resumed) run in an existing directory;
    the old one is kept beside it. Returns how many records it held."""
    meta = Path(sweep_dir) / META_DIR
    p = meta / INDEX
    if not p.exists():
        return 0
    n = sum(1 for _ in open(p, "rb"))
    k = 0
    while (meta / f"index.{k}.jsonl").exists():
        k += 1
    os.replace(p, meta / f"index.{k}.jsonl")
    return n
