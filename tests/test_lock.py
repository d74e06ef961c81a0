"""One writer per sweep directory (issue 10, point 2): mushin_nb._lock with real processes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mushin_nb import _lock, _proc
from mushin_nb._lock import SweepLock, SweepLocked, break_lock, lock_path, read_holder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

ROOT = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from mushin_nb._lock import SweepLock
lock = SweepLock(sys.argv[1], heartbeat_every=float(sys.argv[2])).acquire()
print("held", flush=True)
time.sleep(120)
"""

# waits for the go file, then tries once; the winner keeps holding until its stdin closes
RACE = """
import os, sys, time
from mushin_nb._lock import SweepLock, SweepLocked
go = sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):
    pass
try:
    lock = SweepLock(sys.argv[1]).acquire()
except SweepLocked:
    print("locked", flush=True)
    sys.exit(0)
print("won", flush=True)
sys.stdin.read()
lock.release()
"""


def _python(code: str, *args: str, stdin=None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stdin=stdin, text=True, env=env
    )


@pytest.fixture()
def holder(tmp_path):
    """A real process that holds tmp_path's lock (heartbeat every 0.2 s)."""
    p = _python(HOLD, str(tmp_path), "0.2")
    try:
        assert p.stdout.readline().strip() == "held"
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def _forge(sweep_dir: Path, *, host: str, heartbeat_age: float, **fields) -> Path:
    """Write a lock file as another holder would, its heartbeat ``heartbeat_age`` seconds old."""
    beat = datetime.now().astimezone() - timedelta(seconds=heartbeat_age)
    record = {
        "mushin_nb_lock": 1,
        "host": host,
        "pid": 424242,
        "start": 1,
        "user": "someone",
        "since": (beat - timedelta(hours=1)).isoformat(timespec="seconds"),
        "heartbeat": beat.isoformat(timespec="seconds"),
        "stale_after": 120.0,
        "token": "f" * 32,
        **fields,
    }
    path = lock_path(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    os.utime(path, (beat.timestamp(), beat.timestamp()))
    return path


def _held_by_me(sweep_dir: Path) -> bool:
    h = read_holder(sweep_dir)
    return h is not None and h["pid"] == os.getpid() and h["host"] == socket.gethostname()


def test_second_writer_gets_an_error_naming_the_holder(tmp_path, holder):
    before = lock_path(tmp_path).read_bytes()
    with pytest.raises(SweepLocked) as err:
        SweepLock(tmp_path).acquire()
    msg = str(err.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}" in msg
    assert f"working_dir={str(tmp_path)!r}" in msg
    assert "since " in msg and "last heartbeat " in msg
    assert (
        "another working_dir=" in msg
        and "mushin-nb check --repair" in msg
        and str(lock_path(tmp_path)) in msg
    )
    assert isinstance(err.value, RuntimeError)
    assert err.value.holder["pid"] == holder.pid and err.value.path == lock_path(tmp_path)
    # the refused writer left the holder's lock alone
    assert json.loads(lock_path(tmp_path).read_text())["token"] == json.loads(before)["token"]


def test_read_holder_without_the_lock_and_the_heartbeat_advances(tmp_path, holder):
    h = read_holder(tmp_path)
    assert h["pid"] == holder.pid and h["host"] == socket.gethostname() and not h["stale"]
    assert h["user"] and h["since"] and isinstance(h["start"], int)
    first = h["heartbeat"]
    deadline = time.monotonic() + 10
    while read_holder(tmp_path)["heartbeat"] == first:  # ISO seconds: changes within ~1 s
        assert time.monotonic() < deadline, "the holder's heartbeat never advanced"
        time.sleep(0.1)
    assert read_holder(tmp_path)["since"] == h["since"]
    assert holder.poll() is None and read_holder(tmp_path)["pid"] == holder.pid


def test_lock_of_a_killed_process_is_taken_over(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with pytest.warns(RuntimeWarning, match=rf"took over the lock .* pid {holder.pid} .* no longer exists"):
        lock = SweepLock(tmp_path).acquire()
    assert lock.held and _held_by_me(tmp_path)
    lock.release()
    assert not lock_path(tmp_path).exists()


def test_lock_of_a_zombie_is_taken_over(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)  # not reaped yet: the pid still exists, as a zombie
    deadline = time.monotonic() + 10
    while _proc.proc_stat(holder.pid)[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.warns(RuntimeWarning, match="has exited"):
        with SweepLock(tmp_path) as lock:
            assert lock.held and _held_by_me(tmp_path)


def test_another_host_stale_heartbeat_is_taken_over_fresh_is_not(tmp_path):
    path = _forge(tmp_path, host="node-elsewhere-7", heartbeat_age=30)
    before = path.read_bytes()
    with pytest.raises(SweepLocked, match="pid 424242 on host node-elsewhere-7, user someone") as err:
        SweepLock(tmp_path).acquire()
    assert "(30 s ago)" in str(err.value) or "(31 s ago)" in str(err.value)
    assert path.read_bytes() == before
    assert read_holder(tmp_path)["stale"] is False

    # the holder's own stale_after applies when it is longer than the contender's
    _forge(tmp_path, host="node-elsewhere-7", heartbeat_age=300, stale_after=600.0)
    with pytest.raises(SweepLocked):
        SweepLock(tmp_path, stale_after=60).acquire()

    _forge(tmp_path, host="node-elsewhere-7", heartbeat_age=300)
    assert read_holder(tmp_path)["stale"] is True
    with pytest.warns(RuntimeWarning, match="node-elsewhere-7.*last heartbeat is 30\\d s old"):
        lock = SweepLock(tmp_path).acquire()
    assert _held_by_me(tmp_path)
    lock.release()
    assert os.listdir(tmp_path / ".mushin") == []


def test_stale_after_is_settable(tmp_path):
    _forge(tmp_path, host="node-elsewhere-7", heartbeat_age=30, stale_after=10.0)
    with pytest.raises(SweepLocked):
        SweepLock(tmp_path).acquire()  # 30 s < 120 s
    with pytest.warns(RuntimeWarning, match="took over"):
        SweepLock(tmp_path, stale_after=10).acquire().release()


def test_pid_reuse_counts_as_stale(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = _proc.proc_stat(sleeper.pid)[1]
        me = _lock._my_identity()
        same_machine = {
            "host": me["host"],
            "boot_id": me["boot_id"],
            "pidns": me["pidns"],
            "pid": sleeper.pid,
        }
        # the live pid with its own start time: a live holder
        _forge(tmp_path, heartbeat_age=3600, start=start, **same_machine)
        with pytest.raises(SweepLocked, match=f"pid {sleeper.pid}"):
            SweepLock(tmp_path).acquire()
        # the same pid with another start time: the recorded process is gone, the pid reused
        _forge(tmp_path, heartbeat_age=0, start=start - 1, **same_machine)
        with pytest.warns(RuntimeWarning, match=f"pid {sleeper.pid} is now another process"):
            with SweepLock(tmp_path):
                assert _held_by_me(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_racing_takeover_of_one_stale_lock_has_one_winner(tmp_path):
    for round_ in range(4):
        d = tmp_path / f"r{round_}"
        _forge(d, host="node-elsewhere-7", heartbeat_age=600)
        go = tmp_path / f"go{round_}"
        procs = [_python(RACE, str(d), str(go), stdin=subprocess.PIPE) for _ in range(3)]
        try:
            for p in procs:
                assert p.stdout.readline().strip() == "ready"
            go.touch()
            outcome = {p.pid: p.stdout.readline().strip() for p in procs}
            winners = [pid for pid, o in outcome.items() if o == "won"]
            assert len(winners) == 1, outcome
            assert sorted(outcome.values()) == ["locked", "locked", "won"], outcome
            assert read_holder(d)["pid"] == winners[0]
        finally:
            for p in procs:
                p.stdin.close()
                p.wait(30)
        assert os.listdir(d / ".mushin") == []  # the winner released; no aside file is left


def test_takeover_keeps_a_lock_that_changed_since_it_was_judged_stale(tmp_path):
    # a contender judged this record stale ...
    stale = _forge(tmp_path, host="node-elsewhere-7", heartbeat_age=600).read_bytes()
    # ... but another contender took over first and now holds the directory
    lost = []
    with pytest.warns(RuntimeWarning):
        winner = SweepLock(tmp_path, heartbeat_every=0.1, on_lost=lost.append).acquire()
    fresh = lock_path(tmp_path).read_bytes()
    assert fresh != stale
    assert _lock._displace(lock_path(tmp_path), stale) is False
    # the same after the last look, once it has been moved aside: it is linked back in place
    assert _lock._remove_if_same(lock_path(tmp_path), stale) is False
    assert lock_path(tmp_path).read_bytes() == fresh and winner.held
    assert os.listdir(tmp_path / ".mushin") == ["lock"]
    time.sleep(0.3)  # the holder's heartbeat (every 0.1 s) still finds its own file
    assert winner.held and lost == []
    winner.release()


def test_release_leaves_no_file_and_only_removes_its_own(tmp_path):
    lock = SweepLock(tmp_path).acquire()
    assert lock.held and lock_path(tmp_path).exists()
    lock.release()
    assert not lock.held and os.listdir(tmp_path / ".mushin") == []
    lock.release()  # idempotent

    lock = SweepLock(tmp_path).acquire()
    theirs = _forge(tmp_path, host="node-elsewhere-7", heartbeat_age=0)  # someone else's file now
    lock.release()
    assert json.loads(theirs.read_text())["host"] == "node-elsewhere-7"


def test_same_process_second_lock_is_refused_and_a_lost_lock_is_reported(tmp_path):
    lost = []
    lock = SweepLock(tmp_path, heartbeat_every=0.05, on_lost=lost.append).acquire()
    with pytest.raises(SweepLocked, match=r"\(this process\)"):
        SweepLock(tmp_path).acquire()
    lock_path(tmp_path).unlink()  # removed by hand while held
    deadline = time.monotonic() + 10
    while not lost:
        assert time.monotonic() < deadline, "the heartbeat never noticed the lock was gone"
        time.sleep(0.02)
    assert "was removed" in lost[0] and not lock.held
    with SweepLock(tmp_path):  # the directory is free again
        pass
    lock.release()


def test_unreadable_lock_file(tmp_path):
    path = lock_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(SweepLocked, match="unreadable lock file"):
        SweepLock(tmp_path).acquire()
    assert read_holder(tmp_path)["unreadable"] is True
    old = time.time() - 600
    os.utime(path, (old, old))
    with pytest.warns(RuntimeWarning, match="unreadable"):
        SweepLock(tmp_path).acquire().release()
    assert not path.exists()


def test_break_lock(tmp_path, holder):
    assert break_lock(tmp_path) is None and read_holder(tmp_path)["pid"] == holder.pid  # live: kept
    holder.kill()
    holder.wait()
    assert break_lock(tmp_path)["pid"] == holder.pid
    assert read_holder(tmp_path) is None
    _forge(tmp_path, host="node-elsewhere-7", heartbeat_age=0)
    assert break_lock(tmp_path, force=True)["host"] == "node-elsewhere-7"
    assert not lock_path(tmp_path).exists()
