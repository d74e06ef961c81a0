"""One writer per sweep directory: a lock held for a sweep's lifetime.

The lock is the file ``<sweep_dir>/.mushin/lock``. Whoever creates it (``O_CREAT | O_EXCL``,
atomic on local filesystems and on NFSv3+) holds the directory; it records who that is as one
JSON object::

    {"mushin_nb_lock": 1, "host": "node07", "pid": 4242, "start": 812345, "boot_id": "...",
     "pidns": "pid:[4026531836]", "user": "alice", "since": "2025-01-02T10:00:00+01:00",
     "heartbeat": "2025-01-02T10:42:05+01:00", "stale_after": 120.0, "token": "<hex>"}

A daemon thread rewrites ``heartbeat`` (in place, in the holder's own file) every few seconds
while the lock is held. A contender decides whether a holder is gone:

- same machine (same host name, boot id and pid namespace): the holder is gone when its pid no
  longer exists, is a zombie, or now belongs to a process with another start time (pid reuse;
  ``/proc/<pid>/stat`` field 22);
- any other machine: the holder is gone when its heartbeat (and the file's modification time)
  is older than ``stale_after`` seconds (default 120; the larger of the contender's and the
  holder's recorded value applies).

A stale lock is taken over race-free: the contender renames the lock file to a unique name,
checks that what it moved is byte for byte the record it judged stale (if not, it links it back),
removes it and competes again with ``O_EXCL``: of two contenders that found the same stale lock,
exactly one creates the new file. Rename, link and exclusive create are atomic on NFS, where
``flock``/``fcntl`` locks may be unavailable and ``renameat2(RENAME_EXCHANGE)`` is refused.

Readers (loading, ``mushin-nb check``) never take the lock: :func:`read_holder` only reads it.
See docs/troubleshooting.md, "The sweep lock: one writer per directory".
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from . import _proc

__all__ = [
    "HEARTBEAT_EVERY",
    "STALE_AFTER",
    "SweepLock",
    "SweepLocked",
    "break_lock",
    "lock_path",
    "read_holder",
]

log = logging.getLogger("mushin_nb")

META_DIR = ".mushin"
LOCK_NAME = "lock"
#: seconds without a heartbeat after which a holder on another machine counts as gone
STALE_AFTER = 120.0
"""Seconds without a heartbeat after which another host's lock counts as abandoned."""
#: seconds between two heartbeats of a held lock
HEARTBEAT_EVERY = 5.0
"""Seconds between the holder's heartbeats (rewrites of the lock file)."""
_FORMAT = 1
_MAX_BYTES = 4096

# tokens of the locks this process holds now (a record naming this pid is live only if listed)
_held_tokens: set[str] = set()
_held_guard = threading.Lock()


class SweepLocked(RuntimeError):
    """Another live process holds the sweep directory's lock.

    ``holder`` is the record read from the lock file (see :func:`read_holder`), ``path`` the
    lock file and ``sweep_dir`` the directory.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with SweepLock(d):
    ...     try:
    ...         SweepLock(d).acquire()
    ...     except SweepLocked as e:
    ...         print(e.holder["pid"] == os.getpid(), e.path == lock_path(d))
    True True
    """

    is_refusal = True  # shown without the frames inside mushin_nb (see _errors.refusal)

    def __init__(self, message: str, *, holder: dict[str, Any], path: Path, sweep_dir: Path):
        super().__init__(message)
        self.holder = holder
        self.path = path
        self.sweep_dir = sweep_dir


def lock_path(sweep_dir: str | os.PathLike[str]) -> Path:
    """The lock file of a sweep directory: ``<sweep_dir>/.mushin/lock``.

    Examples
    --------
    >>> lock_path("/data/sweep").as_posix()
    '/data/sweep/.mushin/lock'
    """
    return Path(sweep_dir) / META_DIR / LOCK_NAME


# --------------------------------------------------------------------------- identity


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _iso_to_unix(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.astimezone()
    return t.timestamp()


def _my_identity() -> dict[str, Any]:
    stat = _proc.proc_stat(os.getpid())
    return {
        "mushin_nb_lock": _FORMAT,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": stat[1] if stat else None,
        "boot_id": _proc.boot_id() or None,
        "pidns": _proc.pid_namespace(),
        "user": _proc.user_name(),
    }


def _stale_reason(record: dict[str, Any], mtime: float | None, stale_after: float) -> str | None:
    """Why the holder recorded in ``record`` is gone, or None when it may still be alive."""
    pid = record.get("pid")
    if (
        isinstance(pid, int)
        and 0 < pid < 2**31
        and _proc.same_machine(record.get("host"), record.get("boot_id"), record.get("pidns"))
    ):
        if pid == os.getpid() and record.get("start") == _my_identity()["start"]:
            with _held_guard:
                live = str(record.get("token")) in _held_tokens
            return None if live else "it was left by this process and is no longer held"
        return _proc.pid_gone(pid, record.get("start"))
    limit = stale_after
    recorded = record.get("stale_after")
    if isinstance(recorded, (int, float)) and recorded == recorded:
        limit = max(limit, float(recorded))
    beats = [t for t in (_iso_to_unix(record.get("heartbeat")), mtime) if t is not None]
    if not beats:
        return None
    age = time.time() - max(beats)
    if age > limit:
        return f"its last heartbeat is {age:.0f} s old (more than {limit:.0f} s)"
    return None


# --------------------------------------------------------------------------- reading


def _read_record(path: Path) -> tuple[bytes, dict[str, Any] | None, float] | None:
    """(raw bytes, parsed record or None if unreadable, mtime), or None if there is no file.

    A record is rewritten in place by its heartbeat; a read that catches a write half done is
    retried a few times before the file counts as unreadable.
    """
    raw = b""
    mtime = 0.0
    for attempt in range(5):
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_BYTES)
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None
        except OSError:  # cannot be read (permissions, a directory): never judged old by accident
            raw = b""
            try:
                mtime = os.stat(path).st_mtime
            except FileNotFoundError:
                return None
            except OSError:
                mtime = time.time()
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            record = None
        if isinstance(record, dict):
            return raw, record, mtime
        if attempt < 4:
            time.sleep(0.02)
    return raw, None, mtime


def read_holder(
    sweep_dir: str | os.PathLike[str], *, stale_after: float = STALE_AFTER
) -> dict[str, Any] | None:
    """Who holds the sweep directory's lock, without taking it; None when nobody does.

    The dict holds the lock file's record (``host``, ``pid``, ``start``, ``user``, ``since``,
    ``heartbeat``, ...) plus ``path`` (the lock file), ``modified`` (its mtime, ISO time),
    ``stale`` (True when the holder is gone and the next writer will take the lock over) and
    ``stale_reason``. A lock file that cannot be parsed gives ``{"unreadable": True, ...}``.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> read_holder(d) is None
    True
    >>> with SweepLock(d):
    ...     h = read_holder(d)
    >>> h["pid"] == os.getpid(), h["stale"], h["path"] == str(lock_path(d))
    (True, False, True)
    """
    path = lock_path(sweep_dir)
    got = _read_record(path)
    if got is None:
        return None
    _, record, mtime = got
    modified = datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="seconds")
    if record is None:
        age = time.time() - mtime
        stale = age > stale_after
        return {
            "path": str(path),
            "unreadable": True,
            "modified": modified,
            "stale": stale,
            "stale_reason": f"unreadable and {age:.0f} s old" if stale else None,
        }
    reason = _stale_reason(record, mtime, stale_after)
    return {
        **record,
        "path": str(path),
        "modified": modified,
        "stale": reason is not None,
        "stale_reason": reason,
    }


def break_lock(
    sweep_dir: str | os.PathLike[str], *, force: bool = False, stale_after: float = STALE_AFTER
) -> dict | None:
    """Remove the sweep directory's lock if its holder is gone (any holder with ``force=True``).

    Returns the holder removed (as :func:`read_holder` gives it), or None when there was no lock
    or it is live and ``force`` is False. For ``mushin-nb check --repair``.

    Examples
    --------
    >>> import json, tempfile
    >>> d = tempfile.mkdtemp()
    >>> lock_path(d).parent.mkdir()
    >>> gone = {"host": socket.gethostname(), "pid": 2**31 - 2}  # a process of this host that is gone
    >>> _ = lock_path(d).write_text(json.dumps(gone))
    >>> read_holder(d)["stale_reason"]
    'pid 2147483646 no longer exists'
    >>> break_lock(d)["pid"], read_holder(d)
    (2147483646, None)
    """
    holder = read_holder(sweep_dir, stale_after=stale_after)
    if holder is None or not (force or holder["stale"]):
        return None
    path = lock_path(sweep_dir)
    got = _read_record(path)
    if got is None:
        return None
    return holder if _displace(path, got[0]) else None


def _displace(path: Path, expected: bytes) -> bool:
    """Remove ``path`` only if it still holds exactly ``expected``; True if removed.

    Renames it aside first (atomic, also on NFS), compares what was moved and links it back
    when it is not the expected record: a lock created meanwhile by someone else survives.
    """
    try:  # a last look keeps the window between judging and moving a few system calls wide
        with open(path, "rb") as f:
            if f.read(_MAX_BYTES) != expected:
                return False
    except FileNotFoundError:
        return False
    return _remove_if_same(path, expected)


def _remove_if_same(path: Path, expected: bytes) -> bool:
    """The atomic part of :func:`_displace`: rename aside, compare, remove or link back."""
    aside = path.with_name(f"{LOCK_NAME}.{secrets.token_hex(8)}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        with open(aside, "rb") as f:
            moved = f.read(_MAX_BYTES)
    except OSError:
        moved = None
    if moved == expected:
        _unlink(aside)
        return True
    try:
        os.link(aside, path)  # fails if a new lock appeared meanwhile; that one wins
    except FileExistsError:
        log.warning(
            "mushin_nb: the lock %s changed while it was being taken over; a live holder may have "
            "lost it to a newer one",
            path,
        )
    except OSError:  # no hard links on this filesystem
        if not path.exists():
            try:
                os.rename(aside, path)
                return False
            except OSError:
                pass
    _unlink(aside)
    return False


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- the lock


def _describe(record: dict[str, Any], mtime: float | None) -> str:
    pid, host = record.get("pid"), record.get("host")
    mine = pid == os.getpid() and host == socket.gethostname()
    who = f"pid {pid} on host {host}" + (" (this process)" if mine else "")
    if record.get("user"):
        who += f", user {record['user']}"
    text = f"{who}, holding it since {record.get('since', '?')}"
    beat = record.get("heartbeat")
    beat_t = _iso_to_unix(beat)
    if beat_t is None and mtime is not None:
        beat_t = mtime
    if beat_t is not None:
        text += f", last heartbeat {beat or datetime.fromtimestamp(beat_t).isoformat(timespec='seconds')}"
        text += f" ({max(0.0, time.time() - beat_t):.0f} s ago)"
    return text


class SweepLock:
    """The lock of one sweep directory, held by at most one process on any machine.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with SweepLock(d) as lock:
    ...     read_holder(d)["pid"] == os.getpid()
    True
    >>> read_holder(d) is None
    True

    ``acquire()`` never waits: it takes the lock, takes over a stale one (warning once), or
    raises :class:`SweepLocked`. ``stale_after`` (seconds) is how old another machine's
    heartbeat must be before its lock counts as abandoned; ``heartbeat_every`` how often this
    holder refreshes its own. ``on_lost(reason)`` is called from the heartbeat thread if the
    lock file stops being this holder's while it is held (removed by hand, or taken over after
    the heartbeat stalled for longer than ``stale_after``).
    """

    def __init__(
        self,
        sweep_dir: str | os.PathLike[str],
        *,
        stale_after: float = STALE_AFTER,
        heartbeat_every: float = HEARTBEAT_EVERY,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        if not stale_after > 0:
            raise ValueError(f"stale_after must be a positive number of seconds, got {stale_after!r}")
        if not 0 < heartbeat_every < stale_after:
            raise ValueError(
                f"heartbeat_every must be positive and below stale_after={stale_after!r}, "
                f"got {heartbeat_every!r}"
            )
        self.sweep_dir = Path(sweep_dir)
        self.path = lock_path(sweep_dir)
        self.stale_after = float(stale_after)
        self.heartbeat_every = float(heartbeat_every)
        self.on_lost = on_lost
        self._guard = threading.Lock()
        self._fd: int | None = None
        self._record: dict[str, Any] | None = None
        self._owner_pid: int | None = None
        self._stop = threading.Event()
        self._io = threading.Lock()  # the heartbeat never writes to a descriptor being closed
        self._beat: threading.Thread | None = None
        self.lost: str | None = None

    def __repr__(self) -> str:
        return f"<SweepLock {self.path} {'held' if self.held else 'not held'}>"

    @property
    def held(self) -> bool:
        """True while this object holds the lock (acquired, not released, not lost)."""
        return self._fd is not None and self.lost is None and self._owner_pid == os.getpid()

    @property
    def record(self) -> dict[str, Any] | None:
        """The record this holder wrote, while held."""
        return dict(self._record) if self._record is not None and self.held else None

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ------------------------------------------------------------ acquire
    def acquire(self) -> SweepLock:
        """Take the lock now or raise :class:`SweepLocked`; never waits. Returns self."""
        if self._fd is not None and not self.held:
            self.release()  # a hold that was lost (or inherited through fork): close it first
        with self._guard:
            if self.held:
                raise RuntimeError(f"{self!r} is already held by this object; release() it first")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(20):
                if self._try_create():
                    return self
                got = _read_record(self.path)
                if got is None:
                    continue  # released meanwhile: compete again
                raw, record, mtime = got
                reason = self._stale(record, mtime)
                if reason is None:
                    raise self._locked_error(record or {}, mtime)
                if _displace(self.path, raw):
                    self._warn_takeover(record, mtime, reason)
                # removed (by us or by another contender) or replaced: compete again
            raise self._locked_error((_read_record(self.path) or (b"", {}, None))[1] or {}, None)

    def _stale(self, record: dict[str, Any] | None, mtime: float) -> str | None:
        if record is None:  # unreadable (a writer that died between create and write, or damage)
            age = time.time() - mtime
            return f"the lock file is unreadable and {age:.0f} s old" if age > self.stale_after else None
        return _stale_reason(record, mtime, self.stale_after)

    def _try_create(self) -> bool:
        flags = (
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        )
        try:
            fd = os.open(self.path, flags, 0o666)
        except FileExistsError:
            return False
        now = _now_iso()
        record = {
            **_my_identity(),
            "since": now,
            "heartbeat": now,
            "stale_after": self.stale_after,
            "token": secrets.token_hex(16),
        }
        try:
            _write_record(fd, record)
        except BaseException:
            os.close(fd)
            _unlink(self.path)
            raise
        self._fd, self._record, self._owner_pid = fd, record, os.getpid()
        with _held_guard:
            _held_tokens.add(record["token"])
        self._stop = threading.Event()
        self._beat = threading.Thread(
            target=_heartbeat, args=(weakref.ref(self), self._stop), name="mushin-lock-heartbeat", daemon=True
        )
        self._beat.start()
        _registry.add(self)
        return True

    def _warn_takeover(self, record: dict[str, Any] | None, mtime: float, reason: str) -> None:
        who = _describe(record, mtime) if record else f"an unreadable lock file ({self.path})"
        msg = f"mushin_nb: took over the lock of {self.sweep_dir} from {who}: {reason}."
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def _locked_error(self, record: dict[str, Any], mtime: float | None) -> SweepLocked:
        wd = str(self.sweep_dir)
        if record:
            who = _describe(record, mtime)
        else:
            who = f"an unreadable lock file (it is taken over once it is {self.stale_after:.0f} s old)"
        message = (
            f"working_dir={wd!r} is being written by another sweep: {who}. Two sweeps writing one "
            "directory would reuse job numbers and overwrite each other's results, so this one was "
            "not started. Wait for that sweep to finish, cancel it there "
            "(run.cancel() in its kernel, or stop that process), or pass another working_dir=... . "
            f"If you are sure that process is dead, run `mushin-nb check --repair --break-lock {wd}` or delete "
            f"{self.path}."
        )
        return SweepLocked(message, holder=dict(record), path=self.path, sweep_dir=self.sweep_dir)

    # ------------------------------------------------------------ release
    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still this holder's. Idempotent."""
        with self._guard:
            fd, record = self._fd, self._record
            if fd is None or record is None:
                return
            self._stop.set()
            beat = self._beat
            if beat is not None and beat is not threading.current_thread():
                beat.join(timeout=max(1.0, self.heartbeat_every))
            mine = self._owner_pid == os.getpid()
            with self._io:
                self._reset()
                try:
                    os.close(fd)
                except OSError:
                    pass
            with _held_guard:
                _held_tokens.discard(record["token"])
            _registry.discard(self)
            if not mine:  # a forked child never removes its parent's lock
                return
            got = _read_record(self.path)
            if got is None or got[1] is None or got[1].get("token") != record["token"]:
                return  # not ours any more
            _displace(self.path, got[0])

    def _reset(self) -> None:
        self._fd = self._record = self._owner_pid = self._beat = None
        self.lost = None


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record) + "\n").encode()
    os.pwrite(fd, data, 0) if hasattr(os, "pwrite") else (os.lseek(fd, 0, 0), os.write(fd, data))
    os.ftruncate(fd, len(data))
    os.fsync(fd)


def _heartbeat(ref: weakref.ref[SweepLock], stop: threading.Event) -> None:
    lock = ref()
    if lock is None:
        return
    interval = lock.heartbeat_every
    del lock
    while not stop.wait(interval):
        lock = ref()
        if lock is None:
            return
        fd, record = lock._fd, lock._record
        if fd is None or record is None:
            return
        for _ in range(3):  # a contender that moved it aside by mistake links it back at once
            got = _read_record(lock.path)
            if not (got is None or (got[1] is not None and got[1].get("token") != record["token"])):
                break
            time.sleep(min(0.1, interval))
        else:
            theirs = {} if got is None else got[1] or {}
            reason = (
                f"the lock file {lock.path} was removed"
                if got is None
                else f"the lock file {lock.path} now belongs to pid {theirs.get('pid')} on host {theirs.get('host')}"
            )
            lock.lost = reason
            log.warning(
                "mushin_nb: lost the lock of %s: %s; another sweep may write there now.",
                lock.sweep_dir,
                reason,
            )
            if lock.on_lost is not None:
                try:
                    lock.on_lost(reason)
                except Exception as e:  # pragma: no cover - defensive
                    log.warning("mushin_nb: on_lost callback failed: %s", e)
            return
        with lock._io:
            if stop.is_set() or lock._fd != fd:
                return
            record["heartbeat"] = _now_iso()
            try:
                _write_record(fd, record)
            except OSError as e:  # a transient filesystem error: try again at the next beat
                log.debug("mushin_nb: lock heartbeat failed: %s", e)
        del lock


# locks held by this process (kept alive while held), released at interpreter exit
_registry: set[SweepLock] = set()


@atexit.register
def _release_all() -> None:
    for lock in list(_registry):
        try:
            lock.release()
        except Exception:  # pragma: no cover - best effort at exit
            pass
