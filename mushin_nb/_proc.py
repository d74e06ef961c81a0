"""Who a process is, and whether it is still there: the one home of the ``/proc`` reads.

A writer of a sweep directory (a job's start marker, a temporary file's name, the
directory's lock) records its host, pid and the pid's start time; a later reader
asks whether that process is gone. The sweep directory lock (:mod:`mushin_nb._lock`)
and the store (:mod:`mushin_nb._store`) both read the process table through here.

Examples
--------
>>> import os
>>> state, start = proc_stat(os.getpid())
>>> state in ("R", "S"), isinstance(start, int)
(True, True)
>>> process_state(hostname(), os.getpid(), pid_start(os.getpid()), boot_id())
'alive'
"""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = [
    "boot_id",
    "hostname",
    "pid_gone",
    "pid_namespace",
    "pid_start",
    "proc_stat",
    "process_state",
    "same_machine",
    "user_name",
]

_BOOT_ID: list[str] = []  # cached: it does not change while this process lives


def boot_id() -> str:
    """This machine's boot id (Linux), ``""`` if unknown; another value means a reboot.

    Examples
    --------
    >>> isinstance(boot_id(), str)
    True
    """
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT_ID.append(f.read().strip())
        except OSError:
            _BOOT_ID.append("")
    return _BOOT_ID[0]


def pid_namespace() -> str | None:
    """This process's pid namespace (``"pid:[4026531836]"``), None if unknown: a pid of
    another namespace (a container) cannot be probed from here.

    Examples
    --------
    >>> ns = pid_namespace()
    >>> ns is None or ns.startswith("pid:")
    True
    """
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def hostname() -> str:
    """This host's name, as written into markers and lock files.

    Examples
    --------
    >>> import socket
    >>> hostname() == socket.gethostname()
    True
    """
    return socket.gethostname()


def user_name() -> str:
    """The name of the user running this process (its uid, or ``"?"``, if unknown).

    Examples
    --------
    >>> isinstance(user_name(), str) and user_name() != ""
    True
    """
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


def proc_stat(pid: int) -> tuple[str, int | None] | None:
    """``(state, start time)`` of process ``pid`` from ``/proc/<pid>/stat``; None when it
    has no entry there (no such process, or no ``/proc``).

    ``state`` is field 3 (``"R"``, ``"S"``, ``"Z"`` for a zombie...), ``start`` field 22
    (clock ticks after boot; None if unreadable): with the pid it names one process even
    after the pid is reused.

    Examples
    --------
    >>> import os
    >>> proc_stat(os.getpid())[1] == proc_stat(os.getpid())[1]
    True
    >>> proc_stat(2**31 - 1) is None
    True
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read(4096)
    except OSError:
        return None
    # field 2 (comm) may contain spaces and parentheses: the fields after it follow the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    state = fields[0].decode("ascii", "replace") if fields else ""
    start = int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None
    return state, start


def pid_start(pid: int) -> str:
    """When process ``pid`` started, as text (``""`` if unknown): see :func:`proc_stat`.

    Examples
    --------
    >>> import os
    >>> pid_start(os.getpid()).isdigit()
    True
    """
    got = proc_stat(pid)
    return "" if got is None or got[1] is None else str(got[1])


def process_state(host: str, pid: int, pid_start: str = "", boot: str = "") -> str:
    """``"alive"``, ``"dead"`` or ``"unknown"`` (another host) for the process that
    wrote a record naming ``host``, ``pid``, its ``pid_start`` and the ``boot`` id.

    Examples
    --------
    >>> import os
    >>> process_state(hostname(), os.getpid())
    'alive'
    >>> process_state("another-host.example", os.getpid())
    'unknown'
    >>> process_state(hostname(), os.getpid(), pid_start="1")  # the pid now names another process
    'dead'
    """
    if host != hostname():
        return "unknown"
    if boot and boot_id() and boot != boot_id():
        return "dead"  # the machine rebooted since
    if os.path.isdir("/proc/self"):
        got = proc_stat(pid)
        if got is None:
            return "dead"
        state, start = got
        if state in ("Z", "X"):
            return "dead"  # a zombie: exited, not yet reaped
        if pid_start and start is not None and str(start) != pid_start:
            return "dead"  # the pid now belongs to another process
        return "alive"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except OSError:
        return "alive"  # exists, owned by someone else
    return "alive"


def same_machine(host: Any, boot: Any = None, pidns: Any = None) -> bool:
    """True when a process recorded with ``host``, boot id ``boot`` and pid namespace
    ``pidns`` can be probed from here (None: not recorded, not compared).

    A different boot id is another machine with the same name, or this one rebooted;
    a different pid namespace (a container) cannot be probed.

    Examples
    --------
    >>> same_machine(hostname(), boot_id() or None, pid_namespace())
    True
    >>> same_machine(hostname(), boot="another-boot"), same_machine("another-host.example")
    (False, False)
    """
    if host != hostname():
        return False
    for theirs, mine in ((boot, boot_id() or None), (pidns, pid_namespace())):
        if theirs is not None and mine is not None and theirs != mine:
            return False
    return True


def pid_gone(pid: int, start: Any = None) -> str | None:
    """Why ``pid`` on this machine no longer is the process recorded with start time
    ``start`` (an int, see :func:`proc_stat`); None if it still is, or cannot be told.

    Examples
    --------
    >>> import os
    >>> pid_gone(os.getpid(), proc_stat(os.getpid())[1]) is None
    True
    >>> pid_gone(2**31 - 2)
    'pid 2147483646 no longer exists'
    >>> pid_gone(os.getpid(), -1)
    'pid ... is now another process (start time ..., recorded -1)'
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"pid {pid} no longer exists"
    except PermissionError:
        pass  # alive, another user's
    except OSError:
        return None
    stat = proc_stat(pid)
    if stat is None:
        return None
    state, now_start = stat
    if state in ("Z", "X", "x"):
        return f"pid {pid} has exited"
    if isinstance(start, int) and now_start is not None and now_start != start:
        return f"pid {pid} is now another process (start time {now_start}, recorded {start})"
    return None
