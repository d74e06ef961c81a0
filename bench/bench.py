"""mushin-nb benchmarks: per-job overhead, reload, parallel speed-up, live
views, import time, result latency. Prints one table.

    python bench/bench.py           # the full run (builds bench/.venv-rai for rai-toolbox 0.2.1)
    python bench/bench.py --quick   # small sizes, no rai-toolbox (what CI runs)

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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

os.environ.setdefault("HYDRA_FULL_ERROR", "1")

import logging  # noqa: E402

from _tasks import Busy, Grid, Stamp, Trivial  # noqa: E402  (light module: workers import it)

from mushin_nb import MultiRunMetricsWorkflow, multirun  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []


def row(name: str, value: str, target: str = "", note: str = "") -> None:
    ROWS.append((name, value, target, note))
    print(f"  {name:<58} {value:>16}  {target:<22} {note}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def tmpdir(root: Path, name: str) -> str:
    d = root / f"{name}-{time.perf_counter_ns()}"
    d.mkdir(parents=True)
    return str(d)


def quiet_logging() -> None:
    # Hydra logs each launched job at INFO on the console; keep the table readable
    logging.getLogger("hydra").setLevel(logging.WARNING)


# --------------------------------------------------------------------------- overhead


def per_job_plain(n: int) -> float:
    t = time.perf_counter()
    for x in range(n):
        Trivial.task(x=x)
    return (time.perf_counter() - t) / n


CPU: dict[str, list[float]] = {}


def per_job_mushin(n: int, root: Path, launcher: str | None) -> float:
    """Wall-clock seconds per job; the process's CPU seconds per job (all threads)
    go to CPU, a measure that other load on the machine disturbs less."""
    wf = Trivial()
    d = tmpdir(root, f"ov{n}{launcher}")
    t, c = time.perf_counter(), time.process_time()
    wf.run(x=multirun(list(range(n))), working_dir=d, launcher=launcher, progress=False)
    dt = (time.perf_counter() - t) / n
    CPU.setdefault(f"{n}{launcher}", []).append((time.process_time() - c) / n)
    shutil.rmtree(d, ignore_errors=True)
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


def bench_overhead(root: Path, quick: bool, rai: Path | None) -> None:
    sizes = [9, 30] if quick else [9, 100, 1000]
    print("per-job overhead of a trivial task", file=sys.stderr)
    for n in sizes:
        reps = 3 if n < 1000 else 3
        slow_reps = 3 if n < 1000 else 1
        plain = median([per_job_plain(n) for _ in range(5)])
        fast = median([per_job_mushin(n, root, None) for _ in range(reps)])
        basic = median([per_job_mushin(n, root, "basic") for _ in range(slow_reps)])
        row(f"{n:>5} jobs: plain Python loop (the limit)", f"{plain * 1e3:.4f} ms/job")
        row(
            f"{n:>5} jobs: mushin-nb default launcher",
            f"{fast * 1e3:.2f} ms/job",
            "<= plain + 5 ms",
            f"+{(fast - plain) * 1e3:.2f} ms over the loop; CPU {median(CPU[f'{n}None']) * 1e3:.2f} ms/job",
        )
        row(
            f"{n:>5} jobs: mushin-nb, Hydra basic launcher",
            f"{basic * 1e3:.2f} ms/job",
            "",
            f"{basic / fast:.1f}x the default launcher; CPU {median(CPU[f'{n}basic']) * 1e3:.2f} ms/job",
        )
        if rai is not None:
            vals, cpus = [], []
            for _ in range(slow_reps):
                d = tmpdir(root, f"rai{n}")
                out = run_rai(rai, RAI_RUN, str(n), d)
                vals.append(out["per_job"])
                cpus.append(out["cpu"])
                shutil.rmtree(d, ignore_errors=True)
            r = median(vals)
            fast_cpu = median(CPU[f"{n}None"])
            row(
                f"{n:>5} jobs: rai-toolbox 0.2.1",
                f"{r * 1e3:.2f} ms/job",
                ">= 20x default overhead",
                f"{(r - plain) / max(fast - plain, 1e-9):.1f}x the default launcher's overhead; "
                f"CPU {median(cpus) * 1e3:.2f} ms/job = {median(cpus) / fast_cpu:.1f}x the default's",
            )


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


def reload_seconds(d: str) -> float:
    t = time.perf_counter()
    ds = MultiRunMetricsWorkflow().load_from_dir(d).to_xarray()
    dt = time.perf_counter() - t
    assert int(ds["y"].notnull().sum()) == ds["y"].size
    return dt


def bench_reload(root: Path, quick: bool, rai: Path | None) -> None:
    print("reload a sweep directory into a Dataset", file=sys.stderr)
    sizes = [200] if quick else [1000, 10000]
    for n in sizes:
        d = tmpdir(root, f"grid{n}")
        gen = make_grid(d, n, save_pt=(n == 1000 and rai is not None))
        row(
            f"generate a {n}-job sweep (default launcher, real runs)",
            f"{gen:.1f} s",
            "",
            f"{gen / n * 1e3:.1f} ms/job",
        )
        t = median([reload_seconds(d) for _ in range(3)])
        row(
            f"reload {n} jobs: load_from_dir + to_xarray", f"{t:.3f} s", "<= 3 s at 10k" if n == 10000 else ""
        )
        idx = Path(d) / ".mushin" / "index.jsonl"
        os.rename(idx, str(idx) + ".bak")
        t2 = reload_seconds(d)
        os.rename(str(idx) + ".bak", idx)
        row(f"reload {n} jobs without the index (scan fallback)", f"{t2:.3f} s")
        if n == 1000 and rai is not None:
            r = run_rai(rai, RAI_RELOAD, d)
            row(
                "reload 1000 jobs: rai-toolbox 0.2.1 (metrics.pt files)",
                f"{r['seconds']:.3f} s",
                "",
                f"{r['seconds'] / t:.0f}x mushin-nb",
            )
        shutil.rmtree(d, ignore_errors=True)


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
        shutil.rmtree(d, ignore_errors=True)
    base = res["default launcher"]
    for name, v in res.items():
        note = "" if name == "default launcher" else f"{base / v:.2f}x faster than in-process"
        row(f"{n} jobs x {secs} s CPU: {name}", f"{v:.2f} s", ">= 1.6x" if "joblib" in name else "", note)


# --------------------------------------------------------------------------- live views


def bench_subscriber(root: Path, quick: bool) -> None:
    print("a live view that rebuilds on every event", file=sys.stderr)
    n = 100 if quick else 1000
    out = {}
    for name in ("no subscriber", "subscriber reads run.dataset per event"):
        d = tmpdir(root, "sub")
        t = time.perf_counter()
        run = Trivial().start(x=multirun(list(range(n))), working_dir=d)
        if name != "no subscriber":
            run.subscribe(lambda ev, run=run: run.dataset)
        run.wait()
        out[name] = (time.perf_counter() - t) / n
        shutil.rmtree(d, ignore_errors=True)
    for name, v in out.items():
        row(f"{n} jobs, {name}", f"{v * 1e3:.2f} ms/job")
    row(
        "  cost of the view",
        f"+{(out['subscriber reads run.dataset per event'] - out['no subscriber']) * 1e3:.2f} ms/job",
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
        shutil.rmtree(d, ignore_errors=True)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, no rai-toolbox (CI)")
    ap.add_argument("--no-rai", action="store_true", help="skip the rai-toolbox comparison")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["import", "overhead", "reload", "parallel", "subscriber", "latency"],
        help="run only these sections",
    )
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    quiet_logging()
    only = set(args.only or ["import", "overhead", "reload", "parallel", "subscriber", "latency"])
    if not only & {"overhead", "reload"}:
        args.no_rai = True
    rai = None if (args.quick or args.no_rai) else rai_python()
    root = Path(tempfile.mkdtemp(prefix="mushin-bench-"))
    cwd = os.getcwd()
    os.chdir(root)
    t0 = time.perf_counter()
    try:
        if "import" in only:
            bench_import(args.quick)
        if "overhead" in only:
            bench_overhead(root, args.quick, rai)
        if "reload" in only:
            bench_reload(root, args.quick, rai)
        if "parallel" in only:
            bench_parallel(root, args.quick)
        if "subscriber" in only:
            bench_subscriber(root, args.quick)
        if "latency" in only:
            bench_latency(root, args.quick)
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
    w = max(len(r[0]) for r in ROWS)
    print(
        f"\nmushin-nb bench ({'quick' if args.quick else 'full'}; {os.cpu_count()} CPUs; "
        f"Python {sys.version.split()[0]}; {time.perf_counter() - t0:.0f} s)\n"
    )
    print(f"{'measure':<{w}}  {'value':>18}  {'target':<24} note")
    print("-" * (w + 70))
    for name, value, target, note in ROWS:
        print(f"{name:<{w}}  {value:>18}  {target:<24} {note}")


if __name__ == "__main__":
    main()
