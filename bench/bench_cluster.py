"""Cluster benchmarks: the same sweep of short jobs on a real cluster engine, through
mushin-nb (live Dataset) and through the engine's stock path with no mushin-nb.

    python bench/bench_cluster.py                 # 100 jobs of 0.2 s per engine
    python bench/bench_cluster.py --quick         # 20 jobs (what CI runs)
    python bench/bench_cluster.py --engines slurm --jobs 50 --duration 0.5

For each engine and variant it measures
  - first cell: seconds from submitting the sweep to the first result (mushin-nb: the
    first cell in the live Dataset; stock: the first job's result file),
  - wall: seconds from submitting to having every result,
  - ideal: jobs x duration / workers (workers: how many jobs the engine runs at once),
  - overhead/job: (wall - ideal) x workers / jobs, the worker-seconds each job costs
    beyond its own duration (starting a process, imports, scheduling, collecting).

SLURM: uses the cluster of ``$SLURM_CONF`` if it answers, else starts one for the run
with ``scripts/cluster/slurm_start.sh`` (root, Debian's packages) and stops it after.
Stock: Hydra's own ``submitit_slurm`` launcher and sweeper, a plain task function.

Engines are entries of ``ENGINES`` (name -> runner); a runner takes the parsed
arguments and returns rows (:class:`Row`). Nothing is asserted; timings are of this
machine (2 cores: the jobs' Python start-up dominates short jobs).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
os.environ.setdefault("HYDRA_FULL_ERROR", "1")


@dataclass
class Row:
    engine: str
    variant: str
    jobs: int
    workers: int
    duration: float
    first: float  # s from submit to the first result
    wall: float  # s from submit to every result
    done: int  # jobs that returned their result

    @property
    def ideal(self) -> float:
        return self.jobs * self.duration / max(self.workers, 1)

    @property
    def overhead(self) -> float:
        return (self.wall - self.ideal) * self.workers / max(self.jobs, 1)


Runner = Callable[[argparse.Namespace], list[Row]]
ENGINES: dict[str, Runner] = {}


def engine(name: str) -> Callable[[Runner], Runner]:
    """Register a runner: ``@engine("dask") def bench_dask(args) -> list[Row]``."""

    def deco(fn: Runner) -> Runner:
        ENGINES[name] = fn
        return fn

    return deco


def log(msg: str) -> None:
    print(f"[bench_cluster] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- SLURM


def _slurm_answers() -> bool:
    if not os.environ.get("SLURM_CONF"):
        return False
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "is UP" in out.stdout


class _SlurmCluster:
    """The cluster of $SLURM_CONF, or one started (and stopped) for the benchmark."""

    def __init__(self) -> None:
        self.state: str | None = None

    def __enter__(self) -> _SlurmCluster:
        if _slurm_answers():
            log(f"using the SLURM cluster of SLURM_CONF={os.environ['SLURM_CONF']}")
            return self
        self.state = tempfile.mkdtemp(prefix="bench-slurm-")
        log(f"starting a SLURM cluster in {self.state}")
        p = subprocess.run(
            ["bash", str(ROOT / "scripts/cluster/slurm_start.sh"), self.state],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise RuntimeError(f"slurm_start.sh failed ({p.returncode}):\n{p.stderr[-2000:]}")
        out = dict(ln.split("=", 1) for ln in p.stdout.splitlines() if "=" in ln)
        os.environ["SLURM_CONF"] = out["SLURM_CONF"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.state is not None:
            log("stopping the SLURM cluster")
            subprocess.run(["bash", str(ROOT / "scripts/cluster/slurm_stop.sh"), self.state, "--remove"])
            os.environ.pop("SLURM_CONF", None)


def _slurm_workers() -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True).stdout.split()
    try:  # allocated/idle/other/total CPUs
        return int(out[0].split("/")[3])
    except (IndexError, ValueError):
        return 1


def _first_result(folder: Path, t0: float) -> float:
    times = [p.stat().st_mtime for p in folder.rglob("*_result.pkl")]
    return min(times) - t0 if times else float("nan")


def _sleep_task(cfg) -> float:  # noqa: ANN001 - the stock Hydra task: cfg in, a float out
    time.sleep(cfg.duration)
    return float(cfg.x)


def _bench_slurm_mushin(n: int, duration: float, workers: int, root: Path) -> Row:
    from mushin_nb import MultiRunMetricsWorkflow, multirun

    class Sleep(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int, duration: float) -> dict:
            time.sleep(duration)
            return dict(y=float(x))

    first: list[float] = []
    t0 = time.time()
    run = Sleep().start(
        x=multirun(list(range(n))),
        duration=duration,
        working_dir=str(root / "mushin"),
        launcher="slurm",
        to_dictconfig=True,
        launcher_settings={"timeout_min": 10, "cpus_per_task": 1},
    )
    run.subscribe(lambda ev: first.append(time.time()) if not first else None)
    run.wait()
    wall = time.time() - t0
    return Row(
        "slurm", "mushin-nb launcher='slurm'", n, workers, duration, first[0] - t0, wall, run.status["done"]
    )


def _bench_slurm_stock(n: int, duration: float, workers: int, root: Path) -> Row:
    from hydra_zen import launch, make_config

    cfg = make_config(x=0, duration=duration)
    sweep_dir = root / "stock"
    t0 = time.time()
    out = launch(
        cfg,
        _sleep_task,
        overrides=[
            f"x=range(0,{n})",
            "hydra/launcher=submitit_slurm",
            "hydra/sweeper=basic",
            f"hydra.sweep.dir={sweep_dir}",
            "hydra.launcher.timeout_min=10",
            "hydra.launcher.cpus_per_task=1",
            "hydra/hydra_logging=none",
            "hydra/job_logging=none",
        ],
        multirun=True,
        to_dictconfig=True,
        version_base="1.3",
    )
    wall = time.time() - t0
    done = sum(1 for batch in out for j in batch if j.return_value is not None)
    return Row(
        "slurm", "stock submitit_slurm", n, workers, duration, _first_result(sweep_dir, t0), wall, done
    )


@engine("slurm")
def bench_slurm(args: argparse.Namespace) -> list[Row]:
    logging.getLogger("hydra").setLevel(logging.WARNING)
    logging.getLogger("submitit").setLevel(logging.WARNING)
    with _SlurmCluster(), tempfile.TemporaryDirectory(prefix="bench-slurm-sweeps-") as tmp:
        workers = _slurm_workers()
        log(f"SLURM: {args.jobs} jobs of {args.duration} s on {workers} CPUs")
        rows = [_bench_slurm_mushin(args.jobs, args.duration, workers, Path(tmp))]
        log(f"  {rows[-1].variant}: {rows[-1].wall:.1f} s")
        rows.append(_bench_slurm_stock(args.jobs, args.duration, workers, Path(tmp)))
        log(f"  {rows[-1].variant}: {rows[-1].wall:.1f} s")
    return rows


# --------------------------------------------------------------------------- table


def table(rows: list[Row]) -> str:
    head = (
        "| engine | variant | jobs x s | workers | first cell (s) | wall (s) | ideal (s) "
        "| wall / ideal | overhead/job (s) | done |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r.engine} | {r.variant} | {r.jobs} x {r.duration:g} | {r.workers} | {r.first:.2f} "
            f"| {r.wall:.1f} | {r.ideal:.1f} | {r.wall / r.ideal:.1f} | {r.overhead:.2f} | {r.done}/{r.jobs} |"
        )
    by_engine: dict[str, list[Row]] = {}
    for r in rows:
        by_engine.setdefault(r.engine, []).append(r)
    for eng, rs in by_engine.items():
        if len(rs) >= 2:
            d = rs[0].overhead - rs[-1].overhead
            lines.append(
                f"\n{eng}: mushin-nb costs {d:+.2f} s of worker time per job against {rs[-1].variant}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 jobs per engine (CI)")
    ap.add_argument("--jobs", type=int, default=None, help="jobs per sweep (default 100, --quick 20)")
    ap.add_argument("--duration", type=float, default=0.2, help="seconds each job sleeps")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    args = ap.parse_args()
    if args.jobs is None:
        args.jobs = 20 if args.quick else 100
    rows: list[Row] = []
    for name in [e for e in args.engines.split(",") if e]:
        if name not in ENGINES:
            ap.error(f"--engines: {name!r} is not one of {', '.join(ENGINES)}")
        try:
            rows += ENGINES[name](args)
        except Exception as e:  # one engine that cannot run does not hide the others
            log(f"{name}: not measured: {type(e).__name__}: {e}")
    print(table(rows))


# --------------------------------------------------------------------------- Dask and Ray
# (issue 11, the Dask/Ray half) Each starts its test cluster with the project's scripts
# (scripts/cluster/{dask,ray}_start.sh: two workers / two one-CPU nodes on this machine)
# and stops it after. Stock: the same sleeps as plain tasks of the engine's own API
# (client.submit / ray.remote), no Hydra and no mushin-nb: the engine's floor.


class _ScriptCluster:
    """A Dask or Ray cluster started (and stopped) with scripts/cluster for the run."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.state = tempfile.mkdtemp(prefix=f"bench-{kind}-")

    def __enter__(self) -> _ScriptCluster:
        log(f"starting a {self.kind} cluster in {self.state}")
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHON"] = sys.executable
        t0 = time.time()
        p = subprocess.run(
            ["bash", str(ROOT / f"scripts/cluster/{self.kind}_start.sh"), self.state],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise RuntimeError(f"{self.kind}_start.sh failed ({p.returncode}):\n{p.stderr[-2000:]}")
        self.address = Path(self.state, "address").read_text().strip()
        log(f"  {self.kind} cluster at {self.address} in {time.time() - t0:.1f} s")
        return self

    def __exit__(self, *exc: object) -> None:
        log(f"stopping the {self.kind} cluster")
        p = subprocess.run(["bash", str(ROOT / f"scripts/cluster/{self.kind}_stop.sh"), self.state])
        if p.returncode == 0:
            import shutil

            shutil.rmtree(self.state, ignore_errors=True)


def _bench_mushin(engine_name: str, n: int, duration: float, workers: int, root: Path, settings: dict) -> Row:
    from mushin_nb import MultiRunMetricsWorkflow, multirun

    class Sleep(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int, duration: float) -> dict:
            time.sleep(duration)
            return dict(y=float(x))

    first: list[float] = []
    t0 = time.time()
    run = Sleep().start(
        x=multirun(list(range(n))),
        duration=duration,
        working_dir=str(root / f"mushin-{engine_name}"),
        launcher=engine_name,
        launcher_settings=settings,
    )
    run.subscribe(lambda ev: first.append(time.time()) if not first else None)
    run.wait()
    wall = time.time() - t0
    return Row(
        engine_name,
        f"mushin-nb launcher='{engine_name}'",
        n,
        workers,
        duration,
        first[0] - t0,
        wall,
        run.status["done"],
    )


def _plain_sleep(duration: float) -> float:
    time.sleep(duration)
    return duration


@engine("dask")
def bench_dask(args: argparse.Namespace) -> list[Row]:
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with _ScriptCluster("dask") as c, tempfile.TemporaryDirectory(prefix="bench-dask-sweeps-") as tmp:
        from distributed import Client, as_completed

        workers = 2
        log(f"Dask: {args.jobs} jobs of {args.duration} s on {workers} workers")
        rows = [_bench_mushin("dask", args.jobs, args.duration, workers, Path(tmp), {"address": c.address})]
        log(f"  {rows[-1].variant}: {rows[-1].wall:.1f} s")
        with Client(c.address, set_as_default=False) as client:
            t0 = time.time()
            futs = [client.submit(_plain_sleep, args.duration, pure=False) for _ in range(args.jobs)]
            first = None
            done = 0
            for f in as_completed(futs, loop=client.loop):
                f.result()
                done += 1
                first = first or time.time() - t0
            wall = time.time() - t0
        rows.append(
            Row("dask", "stock client.submit", args.jobs, workers, args.duration, first or 0.0, wall, done)
        )
        log(f"  {rows[-1].variant}: {rows[-1].wall:.1f} s")
        from mushin_nb import _remote

        for k, cl in list(_remote._DASK.items()):
            cl.close()
            _remote._DASK.pop(k, None)
    return rows


@engine("ray")
def bench_ray(args: argparse.Namespace) -> list[Row]:
    with _ScriptCluster("ray") as c, tempfile.TemporaryDirectory(prefix="bench-ray-sweeps-") as tmp:
        os.environ["RAY_AUTH_MODE"] = "token"  # before Ray is imported: it reads them then
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(Path(c.state, "token"))
        import ray

        workers = 2
        log(f"Ray: {args.jobs} jobs of {args.duration} s on {workers} one-CPU nodes")
        try:
            settings = {"address": c.address, "init": {"log_to_driver": False}}
            rows = [_bench_mushin("ray", args.jobs, args.duration, workers, Path(tmp), settings)]
            log(f"  {rows[-1].variant}: {rows[-1].wall:.1f} s")
            sleep = ray.remote(num_cpus=1)(_plain_sleep)
            t0 = time.time()
            refs = [sleep.remote(args.duration) for _ in range(args.jobs)]
            first = None
            done = 0
            while refs:
                ready, refs = ray.wait(refs, num_returns=1)
                ray.get(ready)
                done += len(ready)
                first = first or time.time() - t0
            wall = time.time() - t0
            rows.append(
                Row("ray", "stock ray.remote", args.jobs, workers, args.duration, first or 0.0, wall, done)
            )
            log(f"  {rows[-1].variant}: {rows[-1].wall:.1f} s")
        finally:
            ray.shutdown()
            for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
                os.environ.pop(k, None)
    return rows


if __name__ == "__main__":
    main()
