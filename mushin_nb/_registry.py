"""The live sweeps of this process, by sweep directory.

What runs inside Hydra (the sweeper plugin, in-process jobs, launcher plugins)
finds the driver's state of its sweep here, from the sweep directory Hydra gives
it (``hydra.sweep.dir``), never through a module global of the engine or a value
passed through Hydra's override grammar.

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> state = LiveState(run_id="r1", lookup={}, skip=set(), start_num=0)
>>> register(d, state)
>>> live_state(d) is state, live_state(d, run_id="other") is None
(True, True)
>>> unregister(d, state); live_state(d) is None
True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LiveState", "register", "unregister", "live_state", "live_run"]


@dataclass
class LiveState:
    """Driver-side state of one running sweep that its jobs and plugins reach."""

    run_id: str
    lookup: dict[str, dict[str, int]]
    skip: set[tuple[int, ...]]
    start_num: int
    cancel: threading.Event = field(default_factory=threading.Event)
    on_record: Callable[[Any], None] | None = None
    on_start: Callable[[tuple[int, ...], str], None] | None = None
    job_thread: threading.Thread | None = None
    run: Any = None  # the SweepRun
    cancel_hooks: list[Callable[[], Any]] = field(default_factory=list)
    # after a cancel, the in-process launcher starts no further job: its cells get no record.
    # True (an adaptive round: few points, which its resume finds by their records): each
    # job not started still records itself as cancelled
    record_unstarted: bool = False


_lock = threading.Lock()
_by_dir: dict[str, LiveState] = {}


def _key(sweep_dir: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(sweep_dir))


def register(sweep_dir: str | os.PathLike[str], state: LiveState) -> None:
    """Make ``state`` the live state of ``sweep_dir`` while its sweep runs."""
    with _lock:
        _by_dir[_key(sweep_dir)] = state


def unregister(sweep_dir: str | os.PathLike[str], state: LiveState | None = None) -> None:
    """Forget the live state of ``sweep_dir`` (only ``state``'s, if given)."""
    with _lock:
        k = _key(sweep_dir)
        if state is None or _by_dir.get(k) is state:
            _by_dir.pop(k, None)


def live_state(
    sweep_dir: str | os.PathLike[str], *, run_id: str | None = None, real: bool = False
) -> LiveState | None:
    """The live state of the sweep running in ``sweep_dir`` in this process (and with
    ``run_id``, if given), or None (e.g. in a worker process). ``real``: ``sweep_dir``
    is already ``os.path.realpath``'s answer (a caller that asks once per job keeps it)."""
    key = os.fspath(sweep_dir) if real else _key(sweep_dir)
    with _lock:
        st = _by_dir.get(key)
    if st is None or (run_id is not None and st.run_id != run_id):
        return None
    return st


def live_run(sweep_dir: str | os.PathLike[str]) -> Any:
    """The ``SweepRun`` running in ``sweep_dir`` in this process, or None."""
    st = live_state(sweep_dir)
    return None if st is None else st.run
