"""The worker side of the mushin_nb joblib launcher (``MushinJoblibLauncher`` in
``launcher.py``): each joblib worker process keeps a ``MushinLauncher`` (so it
composes the configuration once per sweep), and the driver survives the death of
a worker (:func:`run_surviving_deaths`): a worker that dies (``os._exit``, a
segfault, the OOM killer) fails only the job it was running, recorded as that
cell's failure with the exit code or signal; the other jobs run on fresh workers.

No ``from __future__ import annotations`` under ``hydra_plugins`` (see
``sweeper.py``); joblib and mushin_nb are imported lazily.
"""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("hydra_plugins.mushin_nb_plugins.launcher")

__all__ = [
    "process_joblib_cfg",
    "run_surviving_deaths",
    "execute_in_worker",
]


def process_joblib_cfg(joblib_cfg: dict[str, Any]) -> None:
    """Turn the joblib settings that hold numbers as text into ints, in place (as
    hydra-joblib-launcher 1.2 does before ``joblib.Parallel``).

    Examples
    --------
    >>> cfg = {"pre_dispatch": "2*n_jobs", "batch_size": "auto", "max_nbytes": "1000"}
    >>> process_joblib_cfg(cfg)
    >>> cfg
    {'pre_dispatch': '2*n_jobs', 'batch_size': 'auto', 'max_nbytes': 1000}
    """
    for k in ("pre_dispatch", "batch_size", "max_nbytes"):
        if k in joblib_cfg:
            try:
                val = joblib_cfg.get(k)
                if val:
                    joblib_cfg[k] = int(val)
            except ValueError:
                pass


# a job whose worker dies before it starts (e.g. its arguments fail to unpickle) is tried this often
_MAX_TRIES = 3


def run_surviving_deaths(
    todo: list[tuple[int, list[str]]],
    run_batch: Callable[[list[tuple[int, list[str]]]], Any],
    track: Path,
    *,
    lost: Callable[[int, list[str], str], Any],
    from_disk: Callable[[int, list[str]], Any],
) -> dict[int, Any]:
    """Run the jobs ``todo`` ((job num, overrides)) with ``run_batch`` (joblib's
    Parallel, yielding (job num, JobReturn) as jobs finish), surviving the death of
    a worker process (``os._exit``, a segfault, the OOM killer).

    loky kills every worker of a pool when one dies, so after a death: jobs that
    finished keep their results; jobs that had not started run again on a fresh
    pool; of the jobs that had started (each worker writes ``<track>/<num>.start``
    first), a lone one is the job that died and becomes that job's failure (``lost``),
    with the worker's exit code or signal; several are run again one at a time, so
    the one that dies again is known.

    Examples
    --------
    >>> import tempfile
    >>> run_surviving_deaths([(0, ["x=1"]), (1, ["x=2"])],
    ...     lambda batch: ((i, f"ran {ov[0]}") for i, ov in batch), Path(tempfile.mkdtemp()),
    ...     lost=None, from_disk=None)
    {0: 'ran x=1', 1: 'ran x=2'}
    """
    from concurrent.futures.process import BrokenProcessPool

    runs: dict[int, Any] = {}
    tries: dict[int, int] = {}
    alone: list[tuple[int, list[str]]] = []
    while todo or alone:
        if alone:  # a suspect of an earlier death, alone in the pool
            batch = [alone.pop(0)]
        else:
            batch, todo = todo, []
        try:
            for idx, ret in run_batch(batch):
                runs[idx] = ret
        except BrokenProcessPool as e:
            text = str(e)
            started: list[tuple[int, list[str]]] = []
            for idx, ov in batch:
                if idx in runs:
                    continue
                if (track / f"{idx}.end").exists():  # finished, its result lost with the pool
                    runs[idx] = from_disk(idx, ov)
                elif (track / f"{idx}.start").exists():
                    started.append((idx, ov))
                else:
                    tries[idx] = tries.get(idx, 0) + 1
                    if tries[idx] >= _MAX_TRIES:
                        why = f"the worker pool broke {tries[idx]} times before it could start ({text})"
                        runs[idx] = lost(idx, ov, why)
                    else:
                        todo.append((idx, ov))
            if len(started) == 1:
                idx, ov = started[0]
                runs[idx] = lost(idx, ov, _death_text(track, idx, text))
            elif started:
                for idx, _ in started:
                    (track / f"{idx}.start").unlink()
                log.warning(
                    "mushin_nb: a joblib worker died while jobs %s ran; running them again one at a "
                    "time to find the one that died (%s)",
                    [i for i, _ in started],
                    text.splitlines()[0] if text else type(e).__name__,
                )
                alone.extend(started)
    return runs


def _death_text(track: Path, idx: int, text: str) -> str:
    """How the worker running job ``idx`` died, from loky's message ``text``."""
    import re

    from mushin_nb._job import describe_exit

    codes = [int(c) for c in re.findall(r"\((-?\d+)\)", text.partition("exit codes of the workers")[2])]
    try:
        pid = (track / f"{idx}.start").read_text(encoding="utf-8").strip()
    except OSError:
        pid = "?"
    if len(codes) == 1:
        how = describe_exit(codes[0])
    elif codes:
        how = "one of: " + "; ".join(describe_exit(c) for c in codes)
    else:
        how = describe_exit(None)
    return f"the joblib worker process running it (pid {pid}) died: {how}"


def execute_in_worker(
    idx: int,
    overrides: list[str],
    hydra_context: Any,
    config: Any,
    task_function: Any,
    singleton_state: dict[Any, Any],
    key: str,
    track: str | None = None,
) -> tuple[int, Any]:
    """One job in a joblib worker; the worker keeps its MushinLauncher (and so
    its composed templates) for the rest of the sweep. Returns (idx, JobReturn).
    ``<track>/<idx>.start`` / ``.end`` tell the driver that the job started /
    finished in case the worker dies."""
    import os

    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    from hydra_plugins.mushin_nb_plugins.launcher import MushinLauncher

    if track is not None:
        _write(os.path.join(track, f"{idx}.start"), str(os.getpid()))
    setup_globals()
    Singleton.set_state(singleton_state)
    cache = _worker_cache()
    launcher = cache.get(key)
    if launcher is None:
        cache.clear()
        launcher = MushinLauncher(job_id="name_num", quiet=True)
        launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        cache[key] = launcher
    ret = launcher.launch([overrides], idx)[0]
    if track is not None:
        _write(os.path.join(track, f"{idx}.end"), "")
    return idx, ret


def _worker_cache() -> dict[str, Any]:
    # kept across Hydra's re-execution of this module by its plugin scanner
    g = globals()
    if "_WORKER_CACHE" not in g:
        g["_WORKER_CACHE"] = {}
    return g["_WORKER_CACHE"]


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
