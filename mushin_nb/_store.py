"""The sweep directory on disk.

Layout (Hydra's own files are untouched and still readable by other tools)::

    <sweep dir>/
      multirun.yaml                  Hydra's
      .mushin/manifest.json          the sweep: parameters and values in order, task, hash
      .mushin/index.jsonl            one line per finished job (appended as jobs finish)
      .mushin/CANCEL                 present while a cancel / stop is in force
      .mushin/runs/<run id>.json     each run's grid, written once: manifest.json is rebuilt
                                     from these when it is missing or damaged
      <subdir>/.hydra/...            Hydra's per-job config, hydra and overrides files
      <subdir>/mushin_result.json    the job's status, parameters, scalar metrics, error
      <subdir>/mushin_result.npz     the job's array metrics (loaded with allow_pickle=False)
      <subdir>/mushin_error.txt      the traceback of a failed job

Nothing here is pickled: scalars and strings are JSON, arrays are ``.npz``.

Damage stays local: a missing or corrupt result file, a torn or garbage index line or
a damaged manifest costs only the cells involved (see :class:`Damage`). Files follow
the process umask; a temporary file of an interrupted write carries its writer's host
and pid in its name and is removed by the next write to the same file once that writer
is gone. Nothing outside the sweep directory is followed (:func:`job_dir_within`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterable, Iterator, Mapping
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
RUNS_DIR = "runs"
#: ``JobResult.error["type"]`` of a cell whose stored result is damaged
DAMAGED = "DamagedResult"

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


# --------------------------------------------------------------------------- values


# Values mushin_nb refuses, with what to return instead. Complex numbers, dates and
# times, bytes and Python objects have no faithful form in the result files' JSON
# (and complex none in NetCDF without non-standard extensions), so mushin_nb does
# not guess one: the job fails, saying what to return. (docs/workflows.md, "Values")
_KIND_FIXES: dict[str, tuple[str, str]] = {
    "c": ("a complex number", "return z.real and z.imag as two metrics, or abs(z)"),
    "M": (
        "a date/time",
        "return str(t), or a number: t.astype('datetime64[s]').astype(float) (seconds since 1970)",
    ),
    "m": ("a time span", "return a number: t / np.timedelta64(1, 's') (seconds)"),
    "S": ("bytes", "decode it to str (b.decode()), or return np.frombuffer(b, np.uint8)"),
    "V": ("a raw or structured record", "return each field as its own metric"),
    "O": ("a Python object", "return numbers, strings, or arrays/tensors of them"),
}
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


class MetricValueError(TypeError):
    """A metric value that mushin_nb cannot store faithfully (the job's failure)."""


class MetricNameError(ValueError):
    """A metric name that collides with a parameter, a coordinate, ``status`` or
    another metric (the job's failure)."""


def _who(name: str, where: str) -> str:
    return f"The metric {name!r}" + (f" returned by the job with {where}" if where else "")


def _refuse(name: str, where: str, value: Any, what: str, fix: str) -> MetricValueError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return MetricValueError(
        f"{_who(name, where)} is {what} ({type(value).__module__}.{type(value).__qualname__}: "
        f"{shown}), which mushin_nb does not store (it cannot be kept faithfully): {fix}."
    )


_ARRAY_FIXES: dict[str, str] = {
    "c": "return a.real and a.imag as two metrics, or np.abs(a)",
    "M": "return a.astype(str), or numbers: a.astype('datetime64[s]').astype(float) (seconds since 1970)",
    "m": "return numbers: a / np.timedelta64(1, 's') (seconds)",
    "S": "decode it to str: a.astype(str)",
    "V": "return each field as its own metric",
    "O": "return numbers, strings, or arrays/tensors of them",
}


def _check_dtype(value: Any, dtype: Any, *, name: str, where: str) -> None:
    """Refuse a value whose numpy dtype has no faithful stored form."""
    kind = dtype.kind
    is_array = getattr(value, "ndim", 0) != 0 or isinstance(value, (list, tuple))
    if kind in _KIND_FIXES:
        what, fix = _KIND_FIXES[kind]
        if kind == "O" and isinstance(value, Mapping):
            what, fix = "a dict", "return its entries as metrics of their own (dict(a=d['a'], b=d['b']))"
        elif kind == "O" and is_array:
            what, fix = "a list/array holding Python objects (None, dicts, mixed types...)", _ARRAY_FIXES["O"]
        elif is_array:
            what, fix = f"an array of dtype {dtype}", _ARRAY_FIXES[kind]
        raise _refuse(name, where, value, what, fix)
    if kind == "f" and dtype.itemsize > 8:
        raise _refuse(name, where, value, f"of dtype {dtype} (wider than float64)", "return x.astype(float)")
    if kind not in "biufU":  # pragma: no cover - every numpy kind is handled above
        raise _refuse(name, where, value, f"of dtype {dtype}", "return numbers or strings")


def _check_text(text: str, *, name: str, where: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MetricValueError(
            f"{_who(name, where)}: its {what} {text!r} holds {text[e.start : e.end]!r}, which is not "
            "valid Unicode text (a lone surrogate) and cannot be written to a UTF-8 file; remove it, "
            "or return s.encode('utf-8', 'surrogatepass').hex()."
        ) from None


def _leaves_all_str(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, (list, tuple)):
        return all(_leaves_all_str(v) for v in value)
    return False


def to_numpy_or_scalar(value: Any, *, name: str, where: str = "") -> Any:
    """A metric value -> a JSON scalar (bool/int/float/str/None) or a numpy array.

    Tensors (anything with ``detach``/``cpu``/``numpy``) become numpy; a 1-element
    list is unwrapped (rai mushin does the same); numpy scalars become Python ones.

    A value that cannot be stored faithfully raises :class:`MetricValueError`
    (a ``TypeError``) naming the metric, its type, ``where`` (the job's
    parameters) and what to return instead: complex numbers, dates and times,
    bytes, Python objects (dicts, sets, None inside lists...), ints beyond 64
    bits, floats wider than float64, lists mixing strings with other values, and
    arrays of such dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> to_numpy_or_scalar(np.float32(0.5), name="acc")
    0.5
    >>> to_numpy_or_scalar(1 + 2j, name="z", where="x=1")
    Traceback (most recent call last):
    ...
    mushin_nb._store.MetricValueError: The metric 'z' returned by the job with x=1 is a complex number (builtins.complex: (1+2j)), which mushin_nb does not store (it cannot be kept faithfully): return z.real and z.imag as two metrics, or abs(z).
    """
    import datetime as _dt

    import numpy as np

    t = type(value)
    shown = value  # what the task returned, for messages (a tensor, not its numpy copy)
    if value is None or t is bool or t is float:
        return value
    if t is int:
        if not _INT_MIN <= value <= _UINT_MAX:
            raise _refuse(
                name, where, value, "an int beyond 64 bits", "return float(n), or str(n) to keep every digit"
            )
        return value
    if t is str:
        _check_text(value, name=name, where=where, what="value")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise _refuse(
            name, where, value, "bytes", "decode it to str (b.decode()), or return np.frombuffer(b, np.uint8)"
        )
    if isinstance(value, (_dt.date, _dt.time)):
        raise _refuse(
            name,
            where,
            value,
            "a date/time",
            "return str(t) or t.isoformat(), or a number such as t.timestamp()",
        )
    if isinstance(value, _dt.timedelta):
        raise _refuse(name, where, value, "a time span", "return a number: t.total_seconds()")
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        try:
            value = value.detach().cpu().numpy()
        except Exception as e:  # e.g. bfloat16 tensors, which numpy has no dtype for
            raise MetricValueError(
                f"{_who(name, where)} is a {t.__name__} that cannot be turned into a numpy array "
                f"({type(e).__name__}: {e}); return t.float() (or t.double()) instead."
            ) from None
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], (list, tuple)):
        return to_numpy_or_scalar(value[0], name=name, where=where)
    if isinstance(value, np.generic):
        _check_dtype(value, value.dtype, name=name, where=where)
        out = value.item()
        if isinstance(out, str):
            _check_text(out, name=name, where=where, what="value")
        return out
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists
        raise MetricValueError(
            f"{_who(name, where)} ({t.__name__}) cannot be turned into an array ({e}); return a "
            "rectangular list/array (pad it), or one metric per part."
        ) from None
    if arr.dtype == object and isinstance(value, (int, list, tuple)) and _all_big_ints(value):
        raise _refuse(
            name,
            where,
            value,
            "ints beyond 64 bits",
            "return float values, or str values to keep every digit",
        )
    _check_dtype(shown, arr.dtype, name=name, where=where)
    if arr.dtype.kind == "U" and isinstance(value, (list, tuple)) and not _leaves_all_str(value):
        raise _refuse(
            name,
            where,
            value,
            "a list mixing strings with other values",
            "numpy would turn every value into a string; return the strings and the numbers as "
            "separate metrics, or str() each value yourself",
        )
    if arr.ndim == 0:
        out = arr.item()
        if isinstance(out, str):
            _check_text(out, name=name, where=where, what="value")
        return out
    return arr


def _all_big_ints(value: Any) -> bool:
    """True if ``value`` (nested lists) holds only ints, some beyond 64 bits."""
    flat: list[Any] = []

    def walk(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            return all(walk(x) for x in v)
        if type(v) is int:
            flat.append(v)
            return True
        return False

    return walk(value) and any(not _INT_MIN <= v <= _UINT_MAX for v in flat)


#: what mushin_nb calls its own Dataset variables and dimensions (never a metric)
_BUILTIN_NAMES = {
    "status": "the `status` variable of the live Dataset (run.dataset)",
    "working_subdir": "the variable of to_xarray(include_working_subdirs_as_data_var=True)",
    "job_dir": "the dimension of a run over target_job_dirs",
}


def convert_metrics(
    out: Mapping[Any, Any],
    *,
    reserved: Iterable[str] = (),
    swept: Iterable[str] = (),
    where: str = "",
) -> dict[str, Any]:
    """A task's returned dict -> ``{name: JSON scalar or numpy array}``, checked.

    Raises :class:`MetricValueError` for a value that cannot be stored faithfully
    and :class:`MetricNameError` for a name the Dataset cannot hold: one of
    ``reserved`` (the sweep's parameters and ``status``, ``working_subdir``,
    ``job_dir``; ``swept`` tells which of them are coordinates), the coordinate
    ``<metric>_dim<n>`` of an array metric, or the same text as another key
    (``1`` and ``"1"``). ``where`` names the job's parameters in the message.
    """
    reserved = frozenset(reserved)
    swept = frozenset(swept)
    metrics: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    job = f"the job with {where}" if where else "the job"
    for k, v in out.items():
        name = k if type(k) is str else str(k)
        _check_text(name, name=name, where=where, what="name")
        if name in keys:
            raise MetricNameError(
                f"The metric keys {keys[name]!r} ({type(keys[name]).__name__}) and {k!r} "
                f"({type(k).__name__}) returned by {job} are both {name!r} as text (metric names "
                "are strings), so one would overwrite the other. Rename one of them."
            )
        keys[name] = k
        metrics[name] = to_numpy_or_scalar(v, name=name, where=where)

    def clash(name: str, other: str, what: str) -> MetricNameError:
        return MetricNameError(
            f"The metric {name!r} returned by {job} has the name of {what}, so the Dataset "
            f"could not hold both. Rename the metric (e.g. {name + '_value'!r}) in the dict the task returns."
        )

    for name in metrics:
        if name in _BUILTIN_NAMES:
            raise clash(name, name, _BUILTIN_NAMES[name])
        if name in reserved:
            kind = "swept parameter" if name in swept else "parameter"
            where_ds = "a coordinate" if name in swept else "an attribute or coordinate"
            raise clash(name, name, f"the {kind} {name!r} ({where_ds} of the Dataset)")
    for name, v in metrics.items():
        for n in range(getattr(v, "ndim", 0)):
            dim = f"{name}_dim{n}"
            if dim in metrics:
                raise clash(dim, dim, f"the dimension {dim!r} of the array metric {name!r}")
            if dim in reserved or dim in _BUILTIN_NAMES:
                raise MetricNameError(
                    f"The array metric {name!r} returned by {job} has a dimension named {dim!r}, "
                    f"which is also the name of a parameter of the sweep. Rename the metric in the "
                    "dict the task returns."
                )
    return metrics


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


# --------------------------------------------------------------------------- files
#
# Every file is written the way any tool writes one: its mode follows the process
# umask (0o666 & ~umask), and a whole-file write goes to a temporary file beside the
# target, then os.replace. The temporary file is named after the target, this host
# and the writer's pid (temp_name), so the next write to the same target removes the
# ones whose writer is gone (a dead process on this host), and never a live writer's.

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TEMP_RE = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.(?P<rand>[0-9a-f]{8})\.tmp$"
)
_HOST_TAG: list[str] = []


class DamagedFileError(ValueError):
    """A file of a sweep directory that is missing or cannot be read back."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path} {problem}")


def _host_tag() -> str:
    """This host's name as it appears in temporary file names (letters, digits, '-')."""
    if not _HOST_TAG:
        import hashlib
        import socket

        host = socket.gethostname() or "localhost"
        clean = re.sub(r"[^A-Za-z0-9]+", "-", host).strip("-")[:24] or "host"
        _HOST_TAG.append(f"{clean}-{hashlib.sha1(host.encode()).hexdigest()[:6]}")
    return _HOST_TAG[0]


def temp_name(target: str, pid: int | None = None) -> str:
    """The name of a temporary file for a write of the file named ``target``: hidden,
    with this host, the writer's pid and a random part, e.g.
    ``.manifest.json.node1-1a2b3c.4242.9f8e7d6c.tmp``."""
    pid = os.getpid() if pid is None else pid
    return f".{target}.{_host_tag()}.{pid}.{secrets.token_hex(4)}.tmp"


@dataclass
class TempFile:
    """A temporary file of a write in progress or interrupted (see :func:`temp_name`)."""

    path: Path
    target: str
    host: str
    pid: int

    @property
    def writer(self) -> str:
        """``"alive"``, ``"dead"`` or ``"unknown"`` (written on another host)."""
        if self.host != _host_tag():
            return "unknown"
        if self.pid == os.getpid():
            return "alive"  # another thread of this process may be writing it
        return process_state(_host(), self.pid)


def _temp_file(directory: Path, name: str) -> TempFile | None:
    m = _TEMP_RE.match(name)
    if m is None:
        return None
    return TempFile(Path(directory) / name, m["target"], m["host"], int(m["pid"]))


def temp_files(directory: Path) -> list[TempFile]:
    """The temporary files of writes in ``directory`` (of any target)."""
    out = []
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it if e.name.startswith(".") and e.name.endswith(".tmp")]
    except OSError:
        return out
    for name in sorted(names):
        t = _temp_file(Path(directory), name)
        if t is not None:
            out.append(t)
    return out


def _unlink_quiet(p: Path | str) -> bool:
    try:
        os.unlink(p)
    except OSError:
        return False
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary files of earlier, interrupted writes to ``target`` whose
    writer is gone (a dead process on this host). A live writer's file, or one of
    another host, is left alone. Returns the removed files."""
    target = Path(target)
    prefix = f".{target.name}."
    try:
        with os.scandir(target.parent) as it:
            names = [e.name for e in it if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return []
    removed = []
    for name in names:
        t = _temp_file(target.parent, name)
        if t is not None and t.target == target.name and t.writer == "dead" and _unlink_quiet(t.path):
            removed.append(t.path)
    return removed


def create_temp(target: Path) -> tuple[Path, int]:
    """Create a temporary file beside ``target`` for an atomic write of it; returns
    its path and an open descriptor. Its mode follows the umask. Stale temporary files
    of ``target`` (their writer is gone) are removed first."""
    target = Path(target)
    remove_stale_temps(target)
    while True:
        tmp = target.parent / temp_name(target.name)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` atomically: a reader sees the old or the new content, never a
    part; an interrupted write leaves at most a temporary file that the next write
    to ``path`` removes."""
    path = Path(path)
    tmp, fd = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write on an O_APPEND descriptor (atomic
    with respect to other writers on a local file system). A torn last line left by
    a killed writer is closed first, so it stays one damaged line and this one is
    whole. A symbolic link at ``path`` is not followed (OSError)."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(
                e.errno,
                f"{path} is a symbolic link; mushin_nb does not write through links (nothing outside "
                "the sweep directory is written): remove the link",
            ) from None
        raise
    try:
        size = os.fstat(fd).st_size
        if size and hasattr(os, "pread") and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        os.write(fd, data)
    finally:
        os.close(fd)


def _open_problem(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "is a symbolic link (not followed: nothing outside the sweep directory is read)"
    return f"cannot be read ({e.strerror or e})"


def _read_json(p: Path) -> tuple[Any, str | None]:
    """The JSON value in file ``p`` (not following a symbolic link), or None and what
    is wrong with the file."""
    try:
        fd = os.open(p, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return None, "is missing"
    except OSError as e:
        return None, _open_problem(e)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, _open_problem(e)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text (an invalid byte at offset {e.start})"
    if not text.strip():
        return None, "is empty"
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"is not valid JSON ({e})"


def _write_npz(f: Any, arrays: Mapping[str, Any]) -> None:
    """What ``np.savez(f, **arrays)`` writes, without pickle and without its keyword
    clashes (a metric named ``file`` or ``allow_pickle``)."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(v), allow_pickle=False)


def load_result_arrays(job_dir: Path, names: Iterable[str]) -> dict[str, Any]:
    """The array metrics ``names`` of the job in ``job_dir``. Raises
    :class:`DamagedFileError` if its ``.npz`` is missing, is a symbolic link, or is
    not a readable archive holding them (never unpickles)."""
    import numpy as np

    p = Path(job_dir) / RESULT_NPZ
    names = list(names)
    try:
        fd = os.open(p, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        raise DamagedFileError(p, "is missing") from None
    except OSError as e:
        raise DamagedFileError(p, _open_problem(e)) from None
    try:
        with os.fdopen(fd, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise DamagedFileError(p, "is not an .npz archive (damaged or replaced)")
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                lacking = [k for k in names if k not in z.files]
                if lacking:
                    raise DamagedFileError(p, f"lacks the arrays {lacking}")
                return {k: z[k] for k in names}
    except DamagedFileError:
        raise
    except Exception as e:
        raise DamagedFileError(p, f"cannot be read ({type(e).__name__}: {e})") from None


def job_dir_within(sweep_dir: Path | str, subdir: str) -> Path:
    """``sweep_dir / subdir``, checked to stay inside ``sweep_dir``.

    Raises ValueError when ``subdir`` is not a relative path below the sweep
    directory: empty, absolute, holding ``..``, or passing through a symbolic link
    that resolves outside ``sweep_dir``. Only ``lstat`` of each component below
    ``sweep_dir`` is done to find out (a link is resolved, never entered).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> job_dir_within(d, "3").name
    '3'
    >>> job_dir_within(d, "../x")
    Traceback (most recent call last):
    ...
    ValueError: the job directory '../x' contains '..', leaving the sweep directory ...
    """
    problem, parts = _outside(str(sweep_dir), subdir)
    if problem is not None:
        raise ValueError(problem)
    return Path(sweep_dir).joinpath(*parts)


def _outside(base: str, subdir: Any) -> tuple[str | None, list[str]]:
    """Why ``subdir`` leaves the sweep directory ``base`` (None if it does not), and
    its parts (plain string work: this runs once per index record)."""
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


# --------------------------------------------------------------------------- damage


@dataclass
class Damage:
    """One damaged file or record of a sweep directory, found by a reader.

    ``marker`` is the stand-in result of the cell it cost (status ``"failed"``, error
    type :data:`DAMAGED`: resume=True re-runs it), when that cell is known.
    ``repairable``: ``mushin-nb check --repair`` rebuilds it. ``fatal``: the sweep's
    results cannot be placed at all (a lost manifest)."""

    path: Path
    problem: str
    fix: str = ""
    line: int | None = None
    marker: JobResult | None = None
    repairable: bool = False
    fatal: bool = False
    cell: str = ""  # the job's parameters, when known

    def where(self, sweep_dir: Path | str | None = None) -> str:
        p = Path(self.path)
        if sweep_dir is not None:
            try:
                p = p.relative_to(sweep_dir)
            except ValueError:
                pass
        return str(p) + (f" line {self.line}" if self.line else "")

    def describe(self, sweep_dir: Path | str | None = None) -> str:
        s = f"{self.where(sweep_dir)} {self.problem}"
        if self.cell:
            s += f" (the job with {self.cell})"
        return s + (f": {self.fix}" if self.fix else "")


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


def is_damaged(r: JobResult) -> bool:
    """True for the stand-in result of a cell whose stored result is damaged."""
    return r.status == "failed" and isinstance(r.error, Mapping) and r.error.get("type") == DAMAGED


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


def damage_report(sweep_dir: Path | str, damage: Iterable[Damage], limit: int = 20) -> str:
    damage = list(damage)
    lines = [
        f"mushin_nb: {sweep_dir} has damaged files or records; everything else was read "
        "(the damage stays local):"
    ]
    lines += [f"  - {d.describe(sweep_dir)}" for d in damage[:limit]]
    if len(damage) > limit:
        lines.append(f"  ... and {len(damage) - limit} more")
    lines.append(
        f"`mushin-nb check {sweep_dir}` reports the directory's health; "
        f"`mushin-nb check --repair {sweep_dir}` rebuilds what can be rebuilt."
    )
    return "\n".join(lines)


def warn_damage(sweep_dir: Path | str, damage: Iterable[Damage], *, stacklevel: int = 2) -> None:
    """One RuntimeWarning naming every damaged file in ``damage`` (none if empty)."""
    damage = list(damage)
    if damage:
        warnings.warn(damage_report(sweep_dir, damage), RuntimeWarning, stacklevel=stacklevel + 1)


def _report(sweep_dir: Path, found: list[Damage], damage: list[Damage] | None) -> None:
    if damage is None:
        warn_damage(sweep_dir, found, stacklevel=3)
    else:
        damage.extend(found)


# --------------------------------------------------------------------------- job side


def write_job_result(sweep_dir: Path, job_dir: Path, result: JobResult) -> dict[str, Any]:
    """Persist one job's result in its directory and append it to the index.
    Returns the JSON record."""
    import numpy as np

    # metrics reach here converted (convert_metrics); a value that is not stored
    # faithfully must fail here, inside the job's failure boundary, never half-written
    for k, v in (result.metrics or {}).items():
        if type(k) is not str:
            raise MetricNameError(f"metric names must be str; got {k!r} ({type(k).__name__})")
        if isinstance(v, np.ndarray):
            _check_dtype(v, v.dtype, name=k, where="")
        else:
            to_numpy_or_scalar(v, name=k)  # raises MetricValueError for what has no stored form
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
        target = job_dir / RESULT_NPZ
        tmp, fd = create_temp(target)
        try:
            with os.fdopen(fd, "wb") as f:
                _write_npz(f, arrays)
            os.replace(tmp, target)
        except BaseException:
            _unlink_quiet(tmp)
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
    """Write ``.mushin/manifest.json`` atomically, after an immutable per-run copy
    (``.mushin/runs/<run id>.json``: that run's grid, workflow, task hash, created,
    and the runs it builds on) for each run of ``manifest["run_specs"]`` that has
    none yet. A missing or damaged manifest is rebuilt from those copies
    (:func:`read_manifest`)."""
    meta = Path(sweep_dir) / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    write_run_copies(sweep_dir, manifest)
    atomic_write_text(meta / MANIFEST, dumps(manifest))


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def write_run_copies(sweep_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Write the per-run copy of each run of ``manifest`` that has none yet (never
    replacing one). Returns the run ids written."""
    import time

    runs = [r for r in (manifest.get("runs") or []) if isinstance(r, str)]
    specs = manifest.get("run_specs") or {}
    runs_dir = Path(sweep_dir) / META_DIR / RUNS_DIR
    todo = [
        (i, r)
        for i, r in enumerate(runs)
        if r in specs and _RUN_ID.fullmatch(r) and not os.path.lexists(runs_dir / f"{r}.json")
    ]
    if not todo:
        return []
    runs_dir.mkdir(parents=True, exist_ok=True)
    with os.scandir(runs_dir) as it:
        seq = sum(1 for e in it if e.name.endswith(".json"))
    now = time.time()
    written = []
    for i, run_id in todo:
        seq += 1
        copy = {
            "format": manifest.get("format", 1),
            "run_id": run_id,
            "workflow": manifest.get("workflow", ""),
            "task_hash": manifest.get("task_hash", ""),
            "spec": specs[run_id],
            "runs": runs[: i + 1],  # the runs whose results make up the sweep with this one
            "created": manifest.get("created", ""),
            "written": now,
            "seq": seq,  # the newest copy (largest seq) rebuilds the manifest
        }
        if _write_once(runs_dir / f"{run_id}.json", dumps(copy).encode("utf-8")):
            written.append(run_id)
    return written


def _write_once(target: Path, data: bytes) -> bool:
    """Create ``target`` holding ``data`` unless it exists (then False): never a
    partial file, never a replaced one."""
    tmp, fd = create_temp(target)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if os.path.lexists(target):
                return False
            os.replace(tmp, target)
        return True
    finally:
        _unlink_quiet(tmp)


def _spec_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), list):
        return "has no valid grid ('spec')"
    for p in spec["params"]:
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("name"), str)
            or not isinstance(p.get("values"), list)
        ):
            return "has a damaged parameter in its grid ('spec')"
    return None


def _manifest_problem(m: Any) -> str | None:
    if not isinstance(m, dict):
        return f"is not a manifest (a JSON {type(m).__name__})"
    bad = _spec_problem(m.get("spec"))
    if bad:
        return bad
    runs = m.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        return "has a damaged list of runs ('runs')"
    specs = m.get("run_specs", {})
    if not isinstance(specs, dict) or any(_spec_problem(s) for s in specs.values()):
        return "has a damaged grid of a run ('run_specs')"
    return None


def _run_copy_problem(c: Any, stem: str) -> str | None:
    if not isinstance(c, dict) or c.get("run_id") != stem:
        return "is not the copy of run " + repr(stem)
    bad = _spec_problem(c.get("spec"))
    if bad:
        return bad
    runs = c.get("runs")
    if (
        not isinstance(runs, list)
        or not all(isinstance(r, str) for r in runs)
        or not runs
        or runs[-1] != stem
    ):
        return "has a damaged list of runs ('runs')"
    return None


def rebuild_manifest(sweep_dir: Path) -> tuple[dict[str, Any] | None, list[Damage]]:
    """The manifest as rebuilt from the per-run copies in ``.mushin/runs/`` (None if
    there are none), and what could not be used."""
    runs_dir = Path(sweep_dir) / META_DIR / RUNS_DIR
    notes: list[Damage] = []
    try:
        with os.scandir(runs_dir) as it:
            names = sorted(e.name for e in it if e.name.endswith(".json") and not e.name.startswith("."))
    except OSError:
        return None, notes
    copies: dict[str, dict[str, Any]] = {}
    broken: dict[str, str] = {}
    for name in names:
        c, problem = _read_json(runs_dir / name)
        if problem is None:
            problem = _run_copy_problem(c, name[:-5])
        if problem is None:
            copies[name[:-5]] = c
        else:
            broken[name[:-5]] = problem
    if not copies:
        notes += [Damage(runs_dir / f"{r}.json", p, fix="ignored") for r, p in broken.items()]
        return None, notes
    newest = max(copies.values(), key=lambda c: (c.get("seq") or 0, c.get("written") or 0, len(c["runs"])))
    kept = [r for r in newest["runs"] if r in copies]
    for r in newest["runs"]:
        if r not in copies:
            notes.append(
                Damage(
                    runs_dir / f"{r}.json",
                    broken.pop(r, "is missing"),
                    fix=f"the results of run {r} cannot be placed on the grid and are left out; "
                    "resume=True re-runs their cells",
                )
            )
    notes += [Damage(runs_dir / f"{r}.json", p, fix="ignored") for r, p in broken.items()]
    manifest = {
        "format": newest.get("format", 1),
        "workflow": newest.get("workflow", ""),
        "task_hash": newest.get("task_hash", ""),
        "runs": kept,
        "spec": newest["spec"],
        "run_specs": {r: copies[r]["spec"] for r in kept},
        "created": newest.get("created", ""),
    }
    return manifest, notes


def read_manifest(sweep_dir: Path, *, damage: list[Damage] | None = None) -> dict[str, Any] | None:
    """The sweep's manifest, or None if ``sweep_dir`` holds none.

    A missing or damaged ``manifest.json`` is rebuilt from the per-run copies in
    ``.mushin/runs/`` (see :func:`write_manifest`). What was damaged is added to
    ``damage`` if given, else warned about (one RuntimeWarning). A damaged manifest
    with no copies to rebuild it from gives None and a ``fatal`` :class:`Damage`."""
    meta = Path(sweep_dir) / META_DIR
    p = meta / MANIFEST
    m, problem = _read_json(p)
    if problem is None:
        problem = _manifest_problem(m)
        if problem is None:
            return m
    if problem == "is missing" and not (meta / RUNS_DIR).is_dir():
        return None  # not a mushin_nb sweep directory
    rebuilt, found = rebuild_manifest(sweep_dir)
    if rebuilt is not None:
        found.insert(
            0,
            Damage(
                p,
                problem,
                fix="it was rebuilt from the per-run copies in .mushin/runs/ "
                "(`mushin-nb check --repair` writes it back)",
                repairable=True,
            ),
        )
    elif problem != "is missing":
        found.insert(
            0,
            Damage(
                p,
                problem,
                fix="it cannot be rebuilt (no per-run copies in .mushin/runs/: the sweep was written by "
                "an older mushin-nb), so the results cannot be placed on the grid. Run the sweep again "
                "with resume=False to compute it anew (the old index is kept beside the new one)",
                fatal=True,
            ),
        )
    _report(Path(sweep_dir), found, damage)
    return rebuilt


def _parse_line(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except ValueError:  # a torn last line of a killed writer
        return None


def _record_problem(rec: Any) -> str | None:
    """What makes ``rec`` not a job record (None if it is one)."""
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
    for key, types in (
        ("job_num", int),
        ("run_id", str),
        ("task_hash", str),
        ("returned_none", bool),
        ("scalars", dict),
        ("error", dict),
        ("duration", (int, float)),
        ("finished", (int, float)),
    ):
        v = rec.get(key)
        if v is not None and (not isinstance(v, types) or (types is int and isinstance(v, bool))):
            return f"is not a job record (its {key!r} is a {type(v).__name__})"
    for key in ("arrays", "order"):
        v = rec.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            return f"is not a job record (its {key!r} is damaged)"
    return None


def _parse_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"is not UTF-8 text (an invalid byte at offset {e.start})"
    try:
        rec = json.loads(text)
    except ValueError:
        return None, "is not a JSON record (torn or garbled)"
    problem = _record_problem(rec)
    return (None, problem) if problem else (rec, None)


def _read_index(
    sweep_dir: Path, offset: int = 0, *, final: bool = False
) -> tuple[list[dict[str, Any]], list[Damage], int]:
    """The index's records from byte ``offset`` on (whole lines only), its damaged
    lines, and the new offset. A record naming a directory outside the sweep
    directory is a damaged line whose marker stands for its cell. ``final``: the
    reader does not follow a live writer, so a torn last line is damage too."""
    sweep_dir = Path(sweep_dir)
    p = sweep_dir / META_DIR / INDEX
    bad: list[Damage] = []
    try:
        fd = os.open(p, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return [], bad, offset
    except OSError as e:
        bad.append(
            Damage(p, _open_problem(e), fix="the job directories are scanned instead", repairable=True)
        )
        return [], bad, offset
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n")
    lines = data[: end + 1].split(b"\n")[:-1] if end >= 0 else []
    base = str(sweep_dir)
    first = 1 if offset == 0 else None
    records = []
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        line = None if first is None else first + n
        rec, problem = _parse_record(raw)
        if rec is None:
            bad.append(Damage(p, problem or "", fix=_LINE_FIX, line=line, repairable=True))
            continue
        escape, _ = _outside(base, rec["subdir"])
        if escape is not None:
            problem = f"names {escape}"
            marker = _damage_marker(rec, p, problem, _ESCAPE_FIX, "")
            bad.append(Damage(p, problem, fix=_ESCAPE_FIX, line=line, marker=marker, repairable=True))
            continue
        records.append(rec)
    if final and data[end + 1 :].strip():
        line = None if first is None else first + len(lines)
        bad.append(
            Damage(
                p,
                "ends in a torn line (a writer stopped in the middle of it)",
                fix=_LINE_FIX,
                line=line,
                repairable=True,
            )
        )
    return records, bad, offset + end + 1 if end >= 0 else offset


def read_index_raw(sweep_dir: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Records appended to the index since ``offset`` (bytes), and the new offset.
    Only whole lines are consumed; damaged lines (not UTF-8, not JSON, not a job
    record, or naming a directory outside the sweep directory) are skipped."""
    records, _, new = _read_index(sweep_dir, offset)
    return records, new


_SCAN_DEPTH = 4


def _job_dirs_below(sweep_dir: Path, name: str) -> Iterator[str]:
    """The subdirs (``name`` or below it) that hold a result file. Symbolic links are
    not followed; hidden directories and nested sweep directories are skipped; a
    directory with a result file is not looked into further."""
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


def _unindexed_dirs(sweep_dir: Path, known: Iterable[str]) -> list[str]:
    """Top-level job directories (not links, not hidden) that no index record names."""
    known_top = {s.split("/", 1)[0] for s in known}
    with os.scandir(sweep_dir) as it:
        return sorted(
            e.name
            for e in it
            if not e.name.startswith(".") and e.name not in known_top and e.is_dir(follow_symlinks=False)
        )


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
    """
    sweep_dir = Path(sweep_dir)
    raw, found, _ = _read_index(sweep_dir, final=True)
    by_sub: dict[str, dict[str, Any]] = {}
    for rec in raw:
        by_sub[rec["subdir"]] = rec
    try:
        missing = _unindexed_dirs(sweep_dir, by_sub)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in missing:
        for sub in _job_dirs_below(sweep_dir, name):
            p = sweep_dir / sub / RESULT_JSON
            rec, problem = _read_json(p)
            if problem is None:
                problem = _record_problem(rec)
            if problem is None:
                rec["subdir"] = sub
                by_sub[sub] = rec
            else:
                found.append(Damage(p, problem, fix=_UNPLACED_FIX, marker=_unplaced_marker(sub, p, problem)))
    keep = set(run_ids) if run_ids is not None else None
    out = []
    for sub, rec in by_sub.items():
        if keep is not None and rec.get("run_id", "") not in keep:
            continue  # left by an earlier, replaced run in the same directory
        # the job directory is only needed for array metrics (a Path per job is slow at 10k jobs)
        job_dir = sweep_dir / sub if load_arrays and rec.get("arrays") else None
        try:
            out.append(JobResult.from_json(rec, job_dir))
        except DamagedFileError as e:
            marker = _damage_marker(rec, e.path, e.problem, _LOST_FIX, sub)
            found.append(Damage(e.path, e.problem, fix=_LOST_FIX, marker=marker))
    # a damaged record's cell: only for the runs asked for, and unless a good record of
    # the same run holds it (the job's own directory, found by the scan)
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
    # jobs that started and whose process died (no result): failed; resume=True re-runs them
    out.extend(find_dead_jobs(sweep_dir, skip={r.subdir for r in out}, run_ids=keep))
    out.sort(key=lambda r: r.job_num)
    _report(sweep_dir, found, damage)
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


# --------------------------------------------------------------------------- job start markers
#
# A job writes RUNNING_JSON in its directory before its task runs and removes it once
# its result is written. A marker with no result, left by a process that is gone (an
# os._exit, a segfault or an OOM kill of the kernel or of a worker), is that job's
# failure: read_records reports it as a failed record, so reload shows it and
# resume=True runs the cell again. A marker of a process on another host, or of a
# process still alive, is a job still running (or of unknown fate): left alone.

RUNNING_JSON = "mushin_running.json"
_BOOT_ID: list[str] = []
_ME: list[dict[str, Any]] = []  # this process's identity (host, pid, pid start, boot)


def _boot_id() -> str:
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT_ID.append(f.read().strip())
        except OSError:
            _BOOT_ID.append("")
    return _BOOT_ID[0]


def _pid_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, Linux), "" if unknown:
    with the pid it identifies one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def _host() -> str:
    import socket

    return socket.gethostname()


def process_state(host: str, pid: int, pid_start: str = "", boot: str = "") -> str:
    """``"alive"``, ``"dead"`` or ``"unknown"`` (another host) for the process that
    wrote a start marker."""
    if host != _host():
        return "unknown"
    if boot and _boot_id() and boot != _boot_id():
        return "dead"  # the machine rebooted since
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return "dead"
        fields = data[data.rfind(b")") + 2 :].split()
        if fields and fields[0] in (b"Z", b"X"):
            return "dead"  # a zombie: exited, not yet reaped
        if pid_start and len(fields) > 19 and fields[19].decode() != pid_start:
            return "dead"  # the pid now belongs to another process
        return "alive"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except OSError:
        return "alive"  # exists, owned by someone else
    return "alive"


def mark_job_started(job_dir: Path, **info: Any) -> None:
    """Write the job's start marker (host, pid, pid start time, boot, started, and
    ``info``: index, job_num, subdir, run_id, task_hash)."""
    import time

    pid = os.getpid()
    if not _ME or _ME[0]["pid"] != pid:
        _ME[:] = [{"host": _host(), "pid": pid, "pid_start": _pid_start(pid), "boot": _boot_id()}]
    rec = {**_ME[0], "started": time.time(), **info}
    if "index" in rec:
        rec["index"] = list(rec["index"])
    # one plain write (a job's start pays for one file creation): a reader that sees
    # it partly written skips it, as a marker being written
    fd = os.open(Path(job_dir) / RUNNING_JSON, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, dumps(rec).encode("utf-8"))
    finally:
        os.close(fd)


def clear_job_started(job_dir: Path) -> None:
    """Remove the job's start marker (its result is written, or it was interrupted)."""
    try:
        os.unlink(Path(job_dir) / RUNNING_JSON)
    except FileNotFoundError:
        pass


def read_job_marker(job_dir: Path) -> dict[str, Any] | None:
    """The start marker of a job that has not finished, or None."""
    try:
        text = (Path(job_dir) / RUNNING_JSON).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    rec = _parse_line(text)
    return rec if isinstance(rec, dict) else None


def _marker_dirs(sweep_dir: Path, skip: set[str]) -> list[tuple[str, Path]]:
    """(subdir, job dir) of every job directory with a start marker (``skip``:
    subdirs that have a record). Cheap for the usual flat layout: only
    directories without a record are looked into."""
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


def _has_result_of(job_dir: Path, marker: Mapping[str, Any]) -> bool:
    try:
        res = _parse_line((job_dir / RESULT_JSON).read_text(encoding="utf-8"))
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
    these runs."""
    sweep_dir = Path(sweep_dir)
    keep = set(run_ids) if run_ids is not None else None
    out: list[JobResult] = []
    for sub, d in _marker_dirs(sweep_dir, set(skip)):
        m = read_job_marker(d)
        if m is None or "index" not in m:
            continue  # being written, or not a mushin_nb job
        if keep is not None and m.get("run_id", "") not in keep:
            continue
        if _has_result_of(d, m):
            continue  # it finished (stopped after writing its result, before removing the marker)
        try:
            state = process_state(
                str(m.get("host", "")),
                int(m.get("pid", -1)),
                str(m.get("pid_start", "")),
                str(m.get("boot", "")),
            )
        except (TypeError, ValueError):
            continue
        if state != "dead":
            continue
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
        out.append(
            JobResult(
                index=tuple(int(i) for i in m["index"]),
                status="failed",
                subdir=sub,
                job_num=int(m.get("job_num", -1)),
                error={"type": "ProcessDied", "message": msg, "traceback": ""},
                task_hash=str(m.get("task_hash", "")),
                finished=started,
                run_id=str(m.get("run_id", "")),
            )
        )
    return out
