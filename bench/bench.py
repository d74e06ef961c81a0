"""mushin-nb benchmarks: per-job overhead, the fixed cost of a sweep, the live
Dataset, reload, live NetCDF, live views, memory, parallel speed-up, import time,
result latency. Prints one table, each row with the machine's load average when it
was measured (a loaded machine makes every number worse; compare rows measured
under the same load).

    python bench/bench.py           # the full run (builds bench/.venv-rai for rai-toolbox 0.2.1)
    python bench/bench.py --quick   # small sizes, no rai-toolbox (what CI runs: under a minute)

Timings are medians of repeats on this machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

os.environ.setdefault("HYDRA_FULL_ERROR", "1")

import logging  # noqa: E402

from _tasks import Busy, Grid, Stamp, Trivial  # noqa: E402  (light module: workers import it)

from mushin_nb import MultiRunMetricsWorkflow, multirun  # noqa: E402

ROWS: list[tuple[str, str, str, str, str]] = []


def load() -> str:
    """The machine's 1-minute load average (of os.cpu_count() CPUs)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover - no getloadavg
        return "?"


def row(name: str, value: str, target: str = "", note: str = "") -> None:
    ROWS.append((name, value, target, note, load()))
    print(f"  {name:<58} {value:>16}  {target:<22} {note}  [load {load()}]", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def tmpdir(root: Path, name: str) -> str:
    d = root / f"{name}-{time.perf_counter_ns()}"
    d.mkdir(parents=True)
    return str(d)


# ext4 without a journal skips inodes freed in the last minutes when it creates files
# (docs/scaling.md): a run right after another run's cleanup measures that, not mushin-nb
CLEANUP_STAMP = Path(tempfile.gettempdir()) / "mushin-bench-cleanup.json"
RECENT = 300.0  # seconds: the kernel's longest "recently deleted" window


def recent_cleanup() -> str:
    """A note when an earlier bench run removed its files less than RECENT s ago, else ""."""
    try:
        last = json.loads(CLEANUP_STAMP.read_text())
        ago = time.time() - float(last["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if not 0 <= ago < RECENT:
        return ""
    return (
        f"; an earlier bench run removed {last['entries']} files {ago:.0f} s before this run: on ext4 "
        "without a journal file creation is slower for a few minutes after that (docs/scaling.md)"
    )


def remove_root(root: Path) -> None:
    """Remove the bench's files, and note when and how many (see :func:`recent_cleanup`)."""
    entries = sum(len(dirs) + len(files) for _, dirs, files in os.walk(root))
    shutil.rmtree(root, ignore_errors=True)
    try:
        CLEANUP_STAMP.write_text(json.dumps({"at": time.time(), "entries": entries}))
    except OSError:
        pass


def quiet_logging() -> None:
    # Hydra logs each launched job at INFO on the console; keep the table readable
    logging.getLogger("hydra").setLevel(logging.WARNING)


# --------------------------------------------------------------------------- overhead


def per_job_plain(n: int) -> float:
    t = time.perf_counter()
    for x in range(n):
        Trivial.task(x=x)
    return (time.perf_counter() - t) / n


CPU: dict[str, list[tuple[float, float]]] = {}  # per sweep: (user, sys) CPU seconds per job
DIRS: dict[str, str] = {}  # the last sweep directory of each kind


def cpu_times() -> tuple[float, float]:
    """This process's user and system CPU seconds so far (all its threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def cpu_note(key: str) -> str:
    """'CPU x ms/job (user u, sys s)': medians over the sweeps of kind ``key``."""
    us = CPU[key]
    total = median([u + s for u, s in us])
    return (
        f"CPU {total * 1e3:.2f} ms/job (user {median([u for u, _ in us]) * 1e3:.2f}, "
        f"sys {median([s for _, s in us]) * 1e3:.2f})"
    )


def per_job_mushin(n: int, root: Path, launcher: str | None, kind: str = "") -> float:
    """Wall-clock seconds per job; the process's CPU seconds per job (all threads, user
    and system) go to CPU, a measure that other load on the machine disturbs less.
    Each sweep gets a fresh directory under ``root``, kept until the bench ends:
    deleting files makes the next files created near them slower on some file systems
    (ext4 without a journal skips recently freed inodes one by one)."""
    wf = Trivial()
    key = f"{n}{launcher}{kind}"
    d = tmpdir(root, f"ov{key}")
    os.sync()  # earlier runs' unwritten files make file creation several times slower
    t, (u, s) = time.perf_counter(), cpu_times()
    wf.run(x=multirun(list(range(n))), working_dir=d, launcher=launcher, progress=False)
    dt = (time.perf_counter() - t) / n
    u2, s2 = cpu_times()
    CPU.setdefault(key, []).append(((u2 - u) / n, (s2 - s) / n))
    DIRS[key] = d
    return dt


RAI_RUN = textwrap.dedent(
    """
    import json, sys, time, logging
    import torch; torch.set_num_threads(1)
    from rai_toolbox.mushin.workflows import MultiRunMetricsWorkflow, multirun
    class Trivial(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(y=x)
    n, d = int(sys.argv[1]), sys.argv[2]
    logging.getLogger("hydra").setLevel(logging.WARNING)
    t, c = time.perf_counter(), time.process_time()
    Trivial().run(x=multirun(list(range(n))), working_dir=d)
    print(json.dumps({"per_job": (time.perf_counter() - t) / n, "cpu": (time.process_time() - c) / n}))
    """
)

RAI_RELOAD = textwrap.dedent(
    """
    import json, sys, time
    import torch; torch.set_num_threads(1)
    from rai_toolbox.mushin.workflows import MultiRunMetricsWorkflow
    d = sys.argv[1]
    t = time.perf_counter()
    wf = MultiRunMetricsWorkflow()
    wf.load_from_dir(d, metrics_filename="metrics.pt")
    ds = wf.to_xarray()
    print(json.dumps({"seconds": time.perf_counter() - t, "sizes": dict(ds.sizes)}))
    """
)


def rai_python() -> Path | None:
    from rai_venv import ensure

    try:
        return ensure()
    except Exception as e:  # no network, no wheel: report and go on
        print(f"rai-toolbox venv unavailable: {e}", file=sys.stderr)
        return None


def run_rai(py: Path, script: str, *args: str) -> dict:
    out = subprocess.run(
        [str(py), "-c", script, *args], capture_output=True, text=True, check=True, cwd=args[-1]
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def tmpfs_root() -> tuple[Path | None, str]:
    """A fresh directory on /dev/shm when that is a writable tmpfs (the caller removes
    it), else None and why not."""
    try:
        with open("/proc/mounts") as f:
            types = {p[1]: p[2] for p in (line.split() for line in f) if len(p) > 2}
    except OSError:
        types = {}
    if types.get("/dev/shm") != "tmpfs":
        return None, "no tmpfs at /dev/shm"
    try:
        return Path(tempfile.mkdtemp(prefix="mushin-bench-", dir="/dev/shm")), ""
    except OSError as e:
        return None, f"/dev/shm not writable ({e.strerror})"


def file_creation_ms(base: Path, count: int = 200) -> float:
    """Milliseconds per (a directory + 4 files of 100 bytes), created ``count`` times in a
    fresh directory under ``base`` (kept: see per_job_mushin)."""
    d = tmpdir(base, "files")
    data = b"x" * 100
    os.sync()
    t = time.perf_counter()
    for i in range(count):
        sub = os.path.join(d, str(i))
        os.mkdir(sub)
        for name in ("a", "b", "c", "d"):
            fd = os.open(os.path.join(sub, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.close(fd)
    return (time.perf_counter() - t) / count * 1e3


def inodes(d: str) -> tuple[int, int]:
    """Directories (``d`` itself excluded) and files under ``d``."""
    dirs = files = 0
    for _, ds, fs in os.walk(d):
        dirs += len(ds)
        files += len(fs)
    return dirs, files


def rai_sweeps(rai: Path, root: Path, n: int, reps: int) -> tuple[float, float, str]:
    """rai-toolbox's wall and CPU seconds per job (medians of ``reps`` sweeps of ``n``
    jobs, each in a fresh directory, kept) and its last sweep's directory."""
    vals, cpus, d = [], [], ""
    for _ in range(reps):
        d = tmpdir(root, f"rai{n}")
        os.sync()
        out = run_rai(rai, RAI_RUN, str(n), d)
        vals.append(out["per_job"])
        cpus.append(out["cpu"])
    return median(vals), median(cpus), d


def bench_overhead(root: Path, quick: bool, rai: Path | None) -> None:
    sizes = [9, 30] if quick else [9, 100, 1000]
    counted = 30 if quick else 100  # the size whose sweep directories are counted
    print("per-job overhead of a trivial task", file=sys.stderr)
    disk_note = recent_cleanup()  # before this run's own files
    shm, no_shm = tmpfs_root()
    disk = shm_files = None
    try:
        for n in sizes:
            reps = 3
            slow_reps = 3 if n < 1000 else 1
            largest = n == sizes[-1]
            if largest:  # the disk as the largest size's sweeps find it
                disk = file_creation_ms(root)
                shm_files = file_creation_ms(shm) if shm else None
            plain = median([per_job_plain(n) for _ in range(5)])
            fast = median([per_job_mushin(n, root, None) for _ in range(reps)])
            on_shm = (
                median([per_job_mushin(n, shm, None, "shm") for _ in range(reps)]) if largest and shm else 0
            )
            basic = median([per_job_mushin(n, root, "basic") for _ in range(slow_reps)])
            rai_out = rai_sweeps(rai, root, n, slow_reps) if rai is not None else None
            row(f"{n:>5} jobs: plain Python loop (the limit)", f"{plain * 1e3:.4f} ms/job")
            row(
                f"{n:>5} jobs: mushin-nb default launcher",
                f"{fast * 1e3:.2f} ms/job",
                "<= plain + 1.5 ms at 1000",
                f"+{(fast - plain) * 1e3:.2f} ms over the loop; {cpu_note(f'{n}None')}{disk_note}",
            )
            if largest:
                row(
                    f"{n:>5} jobs: mushin-nb default launcher, sweep dir on tmpfs",
                    f"{on_shm * 1e3:.2f} ms/job" if shm else "skipped",
                    "",
                    f"+{(on_shm - plain) * 1e3:.2f} ms over the loop: the code's overhead without the "
                    f"disk; {cpu_note(f'{n}Noneshm')}"
                    if shm
                    else no_shm,
                )
            row(
                f"{n:>5} jobs: mushin-nb, Hydra basic launcher",
                f"{basic * 1e3:.2f} ms/job",
                "",
                f"{basic / fast:.1f}x the default launcher; {cpu_note(f'{n}basic')}",
            )
            if rai_out is not None:
                r, rai_cpu, rai_dir = rai_out
                fast_cpu = median([u + s for u, s in CPU[f"{n}None"]])
                row(
                    f"{n:>5} jobs: rai-toolbox 0.2.1",
                    f"{r * 1e3:.2f} ms/job",
                    ">= 20x default overhead",
                    f"{(r - plain) / max(fast - plain, 1e-9):.1f}x the default launcher's overhead; "
                    f"CPU {rai_cpu * 1e3:.2f} ms/job = {rai_cpu / fast_cpu:.1f}x the default's",
                )
            if n == counted:  # after the timed sweeps: counting does not disturb them
                jd, jf = (k / n for k in inodes(DIRS[f"{n}None"]))
                rai_note = ""
                if rai_out is not None:
                    rd, rf = (k / n for k in inodes(rai_out[2]))
                    rai_note = f"; rai-toolbox 0.2.1: {rd:.2f} dirs + {rf:.2f} files"
                row(
                    "inodes per job: mushin-nb default launcher",
                    f"{jd:.2f} dirs + {jf:.2f} files",
                    "",
                    f"what a {n}-job sweep leaves on disk, divided by {n}{rai_note}",
                )
        row(
            "file creation on this disk: a directory + 4 files",
            f"{disk:.3f} ms",
            "",
            (f"tmpfs: {shm_files:.3f} ms" if shm_files is not None else f"tmpfs: skipped ({no_shm})")
            + f"; a mushin-nb job leaves {jd:.2f} directories and {jf:.2f} files (the inode row); "
            f"measured before the {sizes[-1]}-job sweeps, in a fresh directory beside theirs",
        )
    finally:
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)


# --------------------------------------------------------------------------- reload


def make_grid(d: str, n: int, save_pt: bool) -> float:
    t = time.perf_counter()
    Grid().run(
        a=multirun(list(range(n // 100))),
        b=multirun(list(range(100))),
        save_pt=save_pt,
        working_dir=d,
        progress=False,
    )
    return time.perf_counter() - t


def write_sweep(d: str, n: int) -> float:
    """A finished sweep of ``n`` jobs (one scalar and one 8-element array metric each),
    written by the store's own job writer, as jobs write it (without running Hydra: 100k
    real jobs take minutes), then closed as a sweep closes: the compact form written
    from the results in memory."""
    import numpy as np

    from mushin_nb import _store
    from mushin_nb._sweep import Param, SweepSpec

    t = time.perf_counter()
    path = Path(d)
    a = n // 100
    spec = SweepSpec(
        [
            Param("a", list(range(a)), [str(i) for i in range(a)], swept=True),
            Param("b", list(range(100)), [str(i) for i in range(100)], swept=True),
        ]
    )
    sj = spec.to_json()
    _store.write_manifest(
        path,
        {
            "format": 1,
            "workflow": "bench.Grid",
            "task_hash": "h",
            "runs": ["r"],
            "spec": sj,
            "run_specs": {"r": sj},
        },
    )
    results = []
    for k in range(n):
        i, j = divmod(k, 100)
        r = _store.JobResult(
            index=(i, j),
            status="done",
            subdir=str(k),
            job_num=k,
            run_id="r",
            task_hash="h",
            metrics={"y": i * j, "v": np.arange(8.0) * i},
            duration=0.001,
            finished=time.time(),
        )
        _store.write_job_result(path, path / str(k), r)
        results.append(r)
    _store.save_columns(path, results)  # what a sweep does when it ends
    return time.perf_counter() - t


def reload_seconds(d: str) -> float:
    t = time.perf_counter()
    ds = MultiRunMetricsWorkflow().load_from_dir(d).to_xarray()
    dt = time.perf_counter() - t
    assert int(ds["y"].notnull().sum()) == ds["y"].size
    return dt


IMPORT_XARRAY = "import numpy, pandas, xarray"
FRESH_RELOAD = (
    "from mushin_nb import MultiRunMetricsWorkflow; import sys, numpy; "
    "ds = MultiRunMetricsWorkflow().load_from_dir(sys.argv[1]).to_xarray(); "
    "assert numpy.isfinite(ds['v'].values).all(); "  # numpy's check: xarray's own would import dask
    "print(' '.join(m for m in ('dask', 'hydra', 'scipy') if m in sys.modules))"
)


def bench_reload(root: Path, quick: bool, rai: Path | None) -> None:
    print(
        "reload a sweep directory into a Dataset (one scalar and one 8-element array metric)", file=sys.stderr
    )
    targets = {2000: "<= 0.05 s", 10000: "<= 0.25 s", 100000: "<= 2.5 s"}
    for n in [2000] if quick else [2000, 10000, 100000]:
        d = tmpdir(root, f"grid{n}")
        gen = write_sweep(d, n)
        reload_seconds(d)  # warm: imports, the OS's file cache
        t = median([reload_seconds(d) for _ in range(3)])
        row(
            f"reload {n} jobs, warm process: load_from_dir + to_xarray",
            f"{t:.3f} s",
            targets[n],
            f"written in {gen:.0f} s by the store's job writer",
        )
        cols = Path(d) / ".mushin" / "columns.npz"
        cols.unlink()
        t2 = reload_seconds(d)  # from the job files (and writes the compact form again)
        row(
            f"reload {n} jobs without .mushin/columns.npz (every job's files)",
            f"{t2:.3f} s",
            "",
            f"{t2 / t:.0f}x the compact form",
        )
        if n == 2000:
            ts, floor = [], []
            for _ in range(5):  # alternating: the same load for both
                for code, into in ((FRESH_RELOAD, ts), (IMPORT_XARRAY, floor)):
                    t0 = time.perf_counter()
                    out = subprocess.run(
                        [sys.executable, "-c", code, d], capture_output=True, text=True, check=True
                    )
                    into.append(time.perf_counter() - t0)
                    if code is FRESH_RELOAD:
                        imported = out.stdout.split()
            row(
                "reload 2000 jobs in a fresh process, imports included",
                f"{median(ts):.2f} s",
                "<= 0.6 s",
                f"the whole `python -c` process (best {min(ts):.2f} s); `python -c 'import numpy, pandas, "
                f"xarray'` alone takes {median(floor):.2f} s; imported: "
                + (", ".join(imported) or "no dask, Hydra or scipy"),
            )
        # the directory is kept until the bench ends: a deletion slows later sweeps' file creation
    if rai is not None:
        n = 1000
        d = tmpdir(root, f"grid{n}")
        make_grid(d, n, save_pt=True)
        t = median([reload_seconds(d) for _ in range(3)])
        r = run_rai(rai, RAI_RELOAD, d)
        row(
            "reload 1000 real jobs: rai-toolbox 0.2.1 (metrics.pt files)",
            f"{r['seconds']:.3f} s",
            "",
            f"{r['seconds'] / t:.0f}x mushin-nb ({t:.3f} s)",
        )
        # the directory is kept until the bench ends: a deletion slows later sweeps' file creation


# --------------------------------------------------------------------------- fixed cost


def bench_fixed(root: Path, quick: bool) -> None:
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    print("the fixed cost of a small sweep", file=sys.stderr)
    plain = median([per_job_plain(9) * 9 for _ in range(5)])
    walls, composing = [], []
    compose = ConfigLoaderImpl.load_configuration
    spent: list[float] = []

    def timed(*a: Any, **k: Any) -> Any:  # Hydra's compositions, timed
        t = time.perf_counter()
        try:
            return compose(*a, **k)
        finally:
            spent.append(time.perf_counter() - t)

    ConfigLoaderImpl.load_configuration = timed  # type: ignore[method-assign]
    try:
        for _ in range(4 if quick else 8):
            d = tmpdir(root, "fixed")  # fresh, kept until the bench ends (see per_job_mushin)
            os.sync()
            spent.clear()
            t = time.perf_counter()
            Trivial().run(x=multirun(list(range(9))), working_dir=d, progress=False)
            walls.append(time.perf_counter() - t)
            composing.append((sum(spent), len(spent)))
    finally:
        ConfigLoaderImpl.load_configuration = compose  # type: ignore[method-assign]
    wall = median(walls[1:])  # the first one pays imports
    row(
        "fixed cost of a 9-job sweep (wall minus the plain loop)",
        f"{wall - plain:.3f} s",
        "<= 0.1 s",
        f"of which Hydra's compositions {median([c for c, _ in composing[1:]]) * 1e3:.0f} ms "
        f"({composing[-1][1]} a sweep; the launcher's job template is made from the launch's config "
        "when the job overrides only set values)",
    )


# --------------------------------------------------------------------------- the live Dataset


def _feeding_run(cells: int, prefill: float):
    """A SweepRun over ``cells`` cells (100 per row), ``prefill`` of them done already."""
    import numpy as np

    from mushin_nb._execution import SweepRun
    from mushin_nb._store import JobResult
    from mushin_nb._sweep import Param, SweepSpec

    a = max(1, cells // 100)
    spec = SweepSpec(
        [
            Param("a", list(range(a)), [str(i) for i in range(a)], swept=True),
            Param("b", list(range(100)), [str(i) for i in range(100)], swept=True),
        ]
    )
    order = np.random.default_rng(0).permutation(a * 100)
    done = int(prefill * a * 100)

    def rec(k: int, pos: int) -> JobResult:
        i, j = divmod(int(pos), 100)
        return JobResult(
            index=(i, j),
            status="done",
            subdir=str(k),
            job_num=k,
            run_id="bench",
            metrics={"y": float(k), "v": np.arange(8.0)},
        )

    previous = [rec(k, order[k]) for k in range(done)]
    run = SweepRun(
        spec=spec,
        sweep_dir=Path(tempfile.mkdtemp()),
        run_id="bench",
        on_error="collect",
        workflow_name="Bench",
        previous=previous,
    )
    return run, [rec(k, order[k]) for k in range(done, min(done + 200, a * 100))]


def bench_live_dataset(quick: bool) -> None:
    print(
        "reading run.dataset after each event (events fed through SweepRun's ingest, no jobs)",
        file=sys.stderr,
    )
    from mushin_nb._dataset import build_dataset

    per: dict[int, float] = {}
    for cells in [100, 10000] if quick else [100, 10000, 100000]:
        run, events = _feeding_run(cells, 0.5)
        times: list[float] = []

        def read(ev, run=run, times=times):
            t = time.perf_counter()
            _ = run.dataset
            times.append(time.perf_counter() - t)

        run.subscribe(read)
        t0 = time.perf_counter()
        for r in events:
            run._ingest(r)
        per_event = (time.perf_counter() - t0) / len(events)
        per[cells] = per_event
        row(
            f"run.dataset after each event, {cells} cells (half done)",
            f"{median(times) * 1e3:.3f} ms",
            "<= 1 ms at 100k" if cells == 100000 else "",
            f"ingest + read {per_event * 1e3:.3f} ms/event; {run._live.copies} array copies",
        )
        if cells <= 10000:  # what it cost before: the whole Dataset built again per change
            res = list(run._results.values())
            t = time.perf_counter()
            for _ in range(5):
                build_dataset(run.spec, res, include_status=True, status=run._status.copy())
            row(
                f"  before: the Dataset rebuilt per event, {cells} cells",
                f"{(time.perf_counter() - t) / 5 * 1e3:.2f} ms",
            )
    big = max(per)
    row(f"  cost per event, {big} cells / 100 cells", f"{per[big] / per[100]:.2f}x", "<= 2x (flat)")


MEMORY = """
import sys, tracemalloc, numpy as np
from mushin_nb._livedata import LiveDataset
from mushin_nb._store import JobResult
from mushin_nb._sweep import Param, SweepSpec
n, width = int(sys.argv[1]), 1000
a = n // 100
spec = SweepSpec([Param("a", list(range(a)), [str(i) for i in range(a)], swept=True),
                  Param("b", list(range(100)), [str(i) for i in range(100)], swept=True)])
import xarray as xr
xr.Dataset({"w": ("d", [1.0])}, coords={"d": [0]})  # imports done: only the Dataset is measured
tracemalloc.start()
live = LiveDataset(spec)
for k in range(n):
    i, j = divmod(k, 100)
    live.add(JobResult(index=(i, j), status="done", metrics={"curve": np.full(width, float(k))}))
    if k % 1000 == 0:
        live.snapshot()  # a reader now and then
ds = live.snapshot()
peak = tracemalloc.get_traced_memory()[1]
print(peak / (n * width * 8))
"""


def bench_memory(quick: bool) -> None:
    print("peak memory of the live Dataset", file=sys.stderr)
    n = 10000 if quick else 100000
    out = subprocess.run([sys.executable, "-c", MEMORY, str(n)], capture_output=True, text=True, check=True)
    ratio = float(out.stdout.strip().splitlines()[-1])
    row(
        f"peak memory of the live Dataset, {n} cells x 1,000 floats",
        f"{ratio:.2f}x the data",
        "<= 1.5x" if n == 100000 else "",
        f"data {n * 8000 / 1e9:.2f} GB; tracemalloc peak",
    )


# --------------------------------------------------------------------------- live view, live NetCDF


def _with_and_without(root: Path, n: int, reps: int, setup, **kw) -> tuple[float, float, Any]:
    """Median wall time of a sweep of ``n`` 1 ms jobs without and with ``setup(run, d)``
    (alternating, after one small sweep of each that pays the imports)."""
    walls: dict[bool, list[float]] = {False: [], True: []}
    last = None
    for k in range(2 * reps + 2):
        with_it = bool(k % 2)
        d = tmpdir(root, "ww")  # kept until the bench ends: a deletion slows the next sweep's files
        os.sync()
        t = time.perf_counter()
        run = Stamp().start(x=multirun(list(range(n if k >= 2 else 5))), sleep=0.001, working_dir=d, **kw)
        extra = setup(run, d) if with_it else None
        run.wait()
        if k >= 2:
            walls[with_it].append(time.perf_counter() - t)
            last = extra if with_it else last
    return median(walls[False]), median(walls[True]), last


VIEW_SWEEP = """
import logging, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
logging.disable(logging.CRITICAL)
from _tasks import Stamp
from mushin_nb import multirun
from mushin_nb.notebook.view import LiveView
n, with_view, d = int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
first = Stamp().start(x=multirun(list(range(5))), sleep=0.001, working_dir=tempfile.mkdtemp(dir=d))
LiveView(first, metric="y").join()  # imports and first plots paid before anything is timed
first.wait()
t = time.perf_counter()
run = Stamp().start(x=multirun(list(range(n))), sleep=0.001, working_dir=tempfile.mkdtemp(dir=d))
view = LiveView(run, metric="y") if with_view else None  # what run.view("y") makes
if view is not None:
    view.panel()
run.wait()
if view is not None:
    view.join()  # its last redraw, the final state
    assert view.drawn_status == run.status
print(time.perf_counter() - t, view.redraws if view else 0)
"""


def bench_view(root: Path, quick: bool) -> None:
    print("a live view during a sweep of 1 ms jobs", file=sys.stderr)
    n = 150 if quick else 10000
    try:  # the notebook stack's imports, before anything is timed
        from mushin_nb.notebook.view import LiveView  # noqa: F401
    except Exception as e:  # no notebook extras
        row(f"live view, {n} cells of 1 ms jobs", "skipped", "", f"{type(e).__name__}: {e}")
        return
    # each sweep in a fresh process, alternating: sweeps one after another in one process
    # get slower (what earlier ones left), which would count against whichever runs second
    # the sweeps' directories on tmpfs: this row is the view's cost, and on a disk the cost
    # of creating 10k job directories varies more than that (with what was deleted nearby)
    shm, why = tmpfs_root()
    base = shm or root
    walls: dict[bool, list[float]] = {False: [], True: []}
    redraws = 0
    try:
        for k in range(2 if quick else 6):
            with_view = bool(k % 2)
            d = tmpdir(base, "view")
            os.sync()  # each sweep starts with the earlier ones' files written (see per_job_mushin)
            out = subprocess.run(
                [sys.executable, "-c", VIEW_SWEEP, str(HERE), str(n), str(int(with_view)), d],
                capture_output=True,
                text=True,
                check=True,
            )
            wall, drawn = out.stdout.split()[-2:]
            walls[with_view].append(float(wall))
            redraws = int(drawn) if with_view else redraws
            if shm is not None:  # on tmpfs a deletion costs the next sweep nothing
                shutil.rmtree(d, ignore_errors=True)
    finally:
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)
    where = "sweep dirs on tmpfs" if shm is not None else f"sweep dirs on disk, kept ({why})"
    a, b = median(walls[False]), median(walls[True])
    row(
        f"live view, {n} cells of 1 ms jobs: sweep wall time",
        f"{b / a:.2f}x",
        "<= 1.10x",
        f"{b:.1f} s with, {a:.1f} s without (medians of {len(walls[True])} fresh processes each, "
        f"alternating; {where}); {redraws} redraws (throttled: at most 5% of the time redrawing, the final "
        "state drawn at the end)",
    )


def bench_live_netcdf(root: Path, quick: bool) -> None:
    print("a NetCDF file written while the sweep runs (save=)", file=sys.stderr)
    n = 150 if quick else 2000
    files = []

    def save(run, d):
        files.append(run.save(Path(d) / "live.nc"))

    a, b, _ = _with_and_without(root, n, 1 if quick else 3, save)
    row(
        f"live NetCDF, {n} jobs of 1 ms: cost per job",
        f"{(b - a) / n * 1e3:+.2f} ms",
        "",
        f"{b:.1f} s with, {a:.1f} s without (cells written in place, flushed each second)",
    )


# --------------------------------------------------------------------------- parallel


def bench_parallel(root: Path, quick: bool) -> None:
    print("CPU-bound jobs: joblib (2 processes) against in-process", file=sys.stderr)
    n, secs = (4, 0.2) if quick else (8, 0.5)
    res = {}
    runs = [
        ("default launcher", {}),
        ("joblib, 2 workers, cold (starts the processes)", dict(launcher="joblib", jobs=2)),
        ("joblib, 2 workers, warm (joblib reuses them)", dict(launcher="joblib", jobs=2)),
    ]
    for name, kw in runs:
        d = tmpdir(root, "busy")
        t = time.perf_counter()
        Busy().run(x=multirun(list(range(n))), seconds=secs, working_dir=d, progress=False, **kw)
        res[name] = time.perf_counter() - t
        # the directory is kept until the bench ends: a deletion slows later sweeps' file creation
    base = res["default launcher"]
    for name, v in res.items():
        note = "" if name == "default launcher" else f"{base / v:.2f}x faster than in-process"
        row(f"{n} jobs x {secs} s CPU: {name}", f"{v:.2f} s", ">= 1.6x" if "joblib" in name else "", note)


# --------------------------------------------------------------------------- live views


def bench_subscriber(root: Path, quick: bool) -> None:
    print("a subscriber that reads run.dataset on every event, in a real sweep", file=sys.stderr)
    n = 100 if quick else 1000
    reads: list[float] = []

    def reader(run, d):
        def read(ev):
            t = time.perf_counter()
            _ = run.dataset
            reads.append(time.perf_counter() - t)

        run.subscribe(read)

    a, b, _ = _with_and_without(root, n, 1 if quick else 3, reader)
    row(
        f"{n} jobs of 1 ms, a subscriber reads run.dataset per event",
        f"{b / n * 1e3:.2f} ms/job",
        "",
        f"{a / n * 1e3:.2f} ms/job without it; the reads themselves: {median(reads) * 1e3:.3f} ms median, "
        f"{sum(reads) / max(len(reads), 1) * 1e3:.3f} ms mean",
    )


def bench_latency(root: Path, quick: bool) -> None:
    print("delay from a job's end to its cell in run.dataset", file=sys.stderr)
    for name, kw, n, sleep in [
        ("default launcher", {}, 20 if quick else 100, 0.0),
        ("joblib, 2 workers", dict(launcher="joblib", jobs=2), 8 if quick else 20, 0.05),
    ]:
        d = tmpdir(root, "lat")
        delays: list[float] = []
        run = Stamp().start(x=multirun(list(range(n))), sleep=sleep, working_dir=d, **kw)

        def on_event(ev, run=run, delays=delays):
            ds = run.dataset
            if str(ds["status"].values[ev.index]) == "done":
                delays.append(time.time() - ev.metrics["t_end"])

        run.subscribe(on_event)
        run.wait()
        # the directory is kept until the bench ends: a deletion slows later sweeps' file creation
        if delays:
            row(
                f"{name}: job end -> cell in run.dataset",
                f"{median(delays) * 1e3:.1f} ms median",
                "",
                f"max {max(delays) * 1e3:.1f} ms over {len(delays)} jobs",
            )


# --------------------------------------------------------------------------- import


def bench_import(quick: bool) -> None:
    code = "import time; t=time.perf_counter(); import mushin_nb; print(time.perf_counter()-t)"
    ts = []
    for _ in range(3 if quick else 7):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        ts.append(float(out.stdout.strip()))
    row("import mushin_nb (fresh process)", f"{median(ts) * 1e3:.0f} ms", "<= 500 ms")
    code2 = (
        "import time; t=time.perf_counter(); from mushin_nb import MultiRunMetricsWorkflow, multirun;"
        "print(time.perf_counter()-t)"
    )
    ts = []
    for _ in range(3 if quick else 5):
        out = subprocess.run([sys.executable, "-c", code2], capture_output=True, text=True, check=True)
        ts.append(float(out.stdout.strip()))
    row("from mushin_nb import MultiRunMetricsWorkflow (fresh process)", f"{median(ts) * 1e3:.0f} ms")


# --------------------------------------------------------------------------- main

SECTIONS = [
    "import",
    "overhead",
    "fixed",
    "live",
    "memory",
    "reload",
    "netcdf",
    "view",
    "parallel",
    "subscriber",
    "latency",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, no rai-toolbox (CI)")
    ap.add_argument("--no-rai", action="store_true", help="skip the rai-toolbox comparison")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        help="run only these sections",
    )
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    quiet_logging()
    only = set(args.only or SECTIONS)
    if not only & {"overhead", "reload"}:
        args.no_rai = True
    rai = None if (args.quick or args.no_rai) else rai_python()
    root = Path(tempfile.mkdtemp(prefix="mushin-bench-"))
    load0 = load()
    cwd = os.getcwd()
    os.chdir(root)
    t0 = time.perf_counter()
    try:
        if "import" in only:
            bench_import(args.quick)
        if "overhead" in only:
            bench_overhead(root, args.quick, rai)
        if "fixed" in only:
            bench_fixed(root, args.quick)
        if "live" in only:
            bench_live_dataset(args.quick)
        if "memory" in only:
            bench_memory(args.quick)
        if "reload" in only:
            bench_reload(root, args.quick, rai)
        if "netcdf" in only:
            bench_live_netcdf(root, args.quick)
        if "view" in only:
            bench_view(root, args.quick)
        if "parallel" in only:
            bench_parallel(root, args.quick)
        if "subscriber" in only:
            bench_subscriber(root, args.quick)
        if "latency" in only:
            bench_latency(root, args.quick)
    finally:
        os.chdir(cwd)
        remove_root(root)
    w = max(len(r[0]) for r in ROWS)
    print(
        f"\nmushin-nb bench ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs; "
        f"Python {sys.version.split()[0]}; {time.perf_counter() - t0:.0f} s; load average "
        f"{load0} at the start, {load()} at the end)\n"
    )
    print(f"{'measure':<{w}}  {'value':>18}  {'target':<24} {'load':>5}  note")
    print("-" * (w + 80))
    for name, value, target, note, ld in ROWS:
        print(f"{name:<{w}}  {value:>18}  {target:<24} {ld:>5}  {note}")


if __name__ == "__main__":
    main()
