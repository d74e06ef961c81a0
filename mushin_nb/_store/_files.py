"""Files of a sweep directory: atomic writes, temporary files, appends, safe reads.

Every file is written the way any tool writes one: its mode follows the process
umask (0o666 & ~umask), and a whole-file write goes to a temporary file beside the
target, then ``os.replace``. The temporary file is named after the target, this host
and the writer's pid (:func:`temp_name`), so the next write to the same target removes
the ones whose writer is gone (a dead process on this host), and never a live writer's.
Nothing is read or written through a symbolic link; nothing is pickled.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> p = Path(tempfile.mkdtemp()) / "a.json"
>>> atomic_write_text(p, dumps({"x": 1}))
>>> read_json(p)
({'x': 1}, None)
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .. import _proc
from ._layout import RESULT_NPZ

__all__ = [
    "DamagedFileError",
    "TempFile",
    "append_line",
    "atomic_write_bytes",
    "atomic_write_text",
    "create_temp",
    "dumps",
    "load_result_arrays",
    "open_nofollow",
    "open_problem",
    "parse_json_line",
    "read_json",
    "remove_stale_temps",
    "rewrite_as",
    "temp_files",
    "temp_name",
    "unlink_quiet",
    "write_npz",
    "write_once",
]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TEMP_RE = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.(?P<rand>[0-9a-f]{8})\.tmp$"
)
_HOST_TAG: list[str] = []


class DamagedFileError(ValueError):
    """A file of a sweep directory that is missing or cannot be read back.

    Examples
    --------
    >>> e = DamagedFileError("/s/0/mushin_result.npz", "is missing")
    >>> e.path.name, e.problem
    ('mushin_result.npz', 'is missing')
    >>> str(e)
    '/s/0/mushin_result.npz is missing'
    """

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path} {problem}")


# --------------------------------------------------------------------------- JSON


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
    """``obj`` as one line of JSON (numpy values and paths as plain JSON, text unescaped).

    Examples
    --------
    >>> import numpy as np
    >>> dumps({"acc": np.float32(0.5), "v": np.arange(2), "name": "é"})
    '{"acc": 0.5, "v": [0, 1], "name": "é"}'
    """
    return json.dumps(obj, default=_json_default, ensure_ascii=False)


def parse_json_line(line: str) -> Any:
    """The JSON value of ``line``, or None when it is not JSON (a torn last line of a
    killed writer).

    Examples
    --------
    >>> parse_json_line('{"a": 1}')
    {'a': 1}
    >>> parse_json_line('{"a": ') is None
    True
    """
    try:
        return json.loads(line)
    except ValueError:
        return None


# --------------------------------------------------------------------------- temporary files


def _host_tag() -> str:
    """This host's name as it appears in temporary file names (letters, digits, '-')."""
    if not _HOST_TAG:
        import hashlib

        host = _proc.hostname() or "localhost"
        clean = re.sub(r"[^A-Za-z0-9]+", "-", host).strip("-")[:24] or "host"
        _HOST_TAG.append(f"{clean}-{hashlib.sha1(host.encode()).hexdigest()[:6]}")
    return _HOST_TAG[0]


def temp_name(target: str, pid: int | None = None) -> str:
    """The name of a temporary file for a write of the file named ``target``: hidden,
    with this host, the writer's pid and a random part, e.g.
    ``.manifest.json.node1-1a2b3c.4242.9f8e7d6c.tmp``.

    Examples
    --------
    >>> name = temp_name("manifest.json", pid=4242)
    >>> name.startswith(".manifest.json.") and name.endswith(".tmp") and ".4242." in name
    True
    """
    pid = os.getpid() if pid is None else pid
    return f".{target}.{_host_tag()}.{pid}.{secrets.token_hex(4)}.tmp"


@dataclass
class TempFile:
    """A temporary file of a write in progress or interrupted (see :func:`temp_name`).

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / temp_name("a.json")).touch()
    >>> [(t.target, t.pid == os.getpid(), t.writer) for t in temp_files(d)]
    [('a.json', True, 'alive')]
    """

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
        return _proc.process_state(_proc.hostname(), self.pid)


def _temp_file(directory: Path, name: str) -> TempFile | None:
    m = _TEMP_RE.match(name)
    if m is None:
        return None
    return TempFile(Path(directory) / name, m["target"], m["host"], int(m["pid"]))


def temp_files(directory: Path) -> list[TempFile]:
    """The temporary files of writes in ``directory`` (of any target).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / temp_name("a.json", pid=1)).touch(); (d / ".other.tmp").touch()
    >>> [t.target for t in temp_files(d)], temp_files(d)[0].pid
    (['a.json'], 1)
    """
    out: list[TempFile] = []
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


def unlink_quiet(p: Path | str) -> bool:
    """Remove file ``p``; True if it was removed, False if it could not be (no error).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "x"
    >>> p.touch()
    >>> unlink_quiet(p), unlink_quiet(p)
    (True, False)
    """
    try:
        os.unlink(p)
    except OSError:
        return False
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary files of earlier, interrupted writes to ``target`` whose
    writer is gone (a dead process on this host). A live writer's file, or one of
    another host, is left alone. Returns the removed files.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> live = d / temp_name("a.json")  # this process: alive
    >>> dead = d / temp_name("a.json", pid=2**31 - 1)  # no such process
    >>> live.touch(); dead.touch()
    >>> remove_stale_temps(d / "a.json") == [dead], live.exists()
    (True, True)
    """
    target = Path(target)
    prefix = f".{target.name}."
    try:
        with os.scandir(target.parent) as it:
            names = [e.name for e in it if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return []
    removed: list[Path] = []
    for name in names:
        t = _temp_file(target.parent, name)
        if t is not None and t.target == target.name and t.writer == "dead" and unlink_quiet(t.path):
            removed.append(t.path)
    return removed


def create_temp(target: Path) -> tuple[Path, int]:
    """Create a temporary file beside ``target`` for an atomic write of it; returns
    its path and an open descriptor. Its mode follows the umask. Stale temporary files
    of ``target`` (their writer is gone) are removed first.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "a.json"
    >>> tmp, fd = create_temp(target)
    >>> os.close(fd); tmp.parent == target.parent, tmp.name.startswith(".a.json.")
    (True, True)
    """
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
    to ``path`` removes.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "b.bin"
    >>> atomic_write_bytes(p, b"one"); atomic_write_bytes(p, b"two")
    >>> p.read_bytes(), [q.name for q in p.parent.iterdir()]
    (b'two', ['b.bin'])
    """
    path = Path(path)
    tmp, fd = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "t.txt"
    >>> atomic_write_text(p, "héllo"); p.read_text(encoding="utf-8")
    'héllo'
    """
    atomic_write_bytes(Path(path), text.encode("utf-8"))


def rewrite_as(source: Path, target: Path, data: bytes) -> bool:
    """Write ``data`` into the existing file ``source`` and rename it to ``target``:
    an atomic write of ``target`` (a reader sees the old or the new content, never a
    part) that creates no file, reusing ``source``'s. False, with nothing changed,
    when ``source`` is missing (or a symbolic link); the caller then writes ``target``
    with :func:`atomic_write_bytes`.

    A job's start marker becomes its result file this way: a job creates one file
    fewer, which counts on file systems where creating a file is slow (a cluster's
    network file system). Until the rename, ``source`` holds a part of ``data``,
    which its readers skip as a file being written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "marker").write_text("a long marker text")
    >>> rewrite_as(d / "marker", d / "result", b"done"), (d / "result").read_bytes()
    (True, b'done')
    >>> rewrite_as(d / "marker", d / "result", b"again"), sorted(p.name for p in d.iterdir())
    (False, ['result'])
    """
    source, target = Path(source), Path(target)
    try:
        fd = os.open(source, os.O_WRONLY | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    remove_stale_temps(target)  # as atomic_write_bytes: earlier interrupted writes of target
    os.replace(source, target)
    return True


def write_once(target: Path, data: bytes) -> bool:
    """Create ``target`` holding ``data`` unless it exists (then False): never a
    partial file, never a replaced one.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "run.json"
    >>> write_once(p, b"first"), write_once(p, b"second"), p.read_bytes()
    (True, False, b'first')
    """
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
        unlink_quiet(tmp)


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write on an O_APPEND descriptor (atomic
    with respect to other writers on a local file system). A torn last line left by
    a killed writer is closed first, so it stays one damaged line and this one is
    whole. A symbolic link at ``path`` is not followed (OSError).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "index.jsonl"
    >>> _ = p.write_text('{"torn": ')  # a killed writer's last line
    >>> append_line(p, '{"a": 1}')
    >>> p.read_text().splitlines()
    ['{"torn": ', '{"a": 1}']
    """
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


# --------------------------------------------------------------------------- reading


def open_nofollow(p: Path | str) -> int:
    """A read-only descriptor of file ``p``; raises OSError (``ELOOP``) for a symbolic
    link: nothing outside the sweep directory is read.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "f").write_text("x"); (d / "link").symlink_to(d / "f")
    1
    >>> os.close(open_nofollow(d / "f"))
    >>> open_nofollow(d / "link")
    Traceback (most recent call last):
    ...
    OSError: [Errno 40] Too many levels of symbolic links: ...
    """
    return os.open(p, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)


def open_problem(e: OSError) -> str:
    """What is wrong with a file that :func:`open_nofollow` could not open, in words.

    Examples
    --------
    >>> import errno
    >>> open_problem(OSError(errno.ELOOP, "Too many levels of symbolic links"))
    'is a symbolic link (not followed: nothing outside the sweep directory is read)'
    >>> open_problem(PermissionError(errno.EACCES, "Permission denied"))
    'cannot be read (Permission denied)'
    """
    if e.errno == errno.ELOOP:
        return "is a symbolic link (not followed: nothing outside the sweep directory is read)"
    return f"cannot be read ({e.strerror or e})"


def read_json(p: Path) -> tuple[Any, str | None]:
    """The JSON value in file ``p`` (not following a symbolic link), or None and what
    is wrong with the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> read_json(d / "nothing.json")
    (None, 'is missing')
    >>> _ = (d / "bad.json").write_bytes(b"\\xff")
    >>> read_json(d / "bad.json")
    (None, 'is not UTF-8 text (an invalid byte at offset 0)')
    """
    try:
        fd = open_nofollow(p)
    except FileNotFoundError:
        return None, "is missing"
    except OSError as e:
        return None, open_problem(e)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, open_problem(e)
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


# --------------------------------------------------------------------------- arrays


def write_npz(f: IO[bytes], arrays: Mapping[str, Any]) -> None:
    """What ``np.savez(f, **arrays)`` writes, without pickle and without its keyword
    clashes (a metric named ``file`` or ``allow_pickle``).

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> buf = io.BytesIO()
    >>> write_npz(buf, {"file": np.arange(3)})
    >>> _ = buf.seek(0)
    >>> np.load(buf, allow_pickle=False)["file"]
    array([0, 1, 2])
    """
    import zipfile

    import numpy as np

    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(v), allow_pickle=False)


def load_result_arrays(job_dir: Path, names: Iterable[str]) -> dict[str, Any]:
    """The array metrics ``names`` of the job in ``job_dir``. Raises
    :class:`DamagedFileError` if its ``.npz`` is missing, is a symbolic link, or is
    not a readable archive holding them (never unpickles).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> with open(d / "mushin_result.npz", "wb") as f:
    ...     write_npz(f, {"curve": np.ones(2)})
    >>> load_result_arrays(d, ["curve"])
    {'curve': array([1., 1.])}
    >>> load_result_arrays(d, ["loss"])
    Traceback (most recent call last):
    ...
    mushin_nb._store.DamagedFileError: ...mushin_result.npz lacks the arrays ['loss']
    """
    import numpy as np

    p = Path(job_dir) / RESULT_NPZ
    names = list(names)
    try:
        fd = open_nofollow(p)
    except FileNotFoundError:
        raise DamagedFileError(p, "is missing") from None
    except OSError as e:
        raise DamagedFileError(p, open_problem(e)) from None
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
