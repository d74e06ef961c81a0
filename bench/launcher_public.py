"""What the public-API path of each patch in ``mushin_nb/_compat.py`` costs per job
in the in-process launcher, against the patched path.

    python bench/launcher_public.py            # 200 and 1,000 trivial jobs
    python bench/launcher_public.py --quick    # 50 and 200

Each configuration runs ``Trivial().run(x=multirun(range(n)))`` (a task that
returns ``dict(y=x)``) through ``MultiRunMetricsWorkflow.run`` with the default
(in-process, fast) launcher; ``public: <patch>`` forces that patch's public path
with ``mushin_nb._compat.public_path``. Prints wall-clock and CPU milliseconds per
job (medians of the repeats) and the difference from the patched path. Nothing
here is asserted.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _tasks import Trivial  # noqa: E402  # pyright: ignore[reportMissingImports]

from mushin_nb import _compat, multirun  # noqa: E402


def per_job(n: int, public: tuple[str, ...] | None, extra: list[str]) -> tuple[float, float]:
    """(wall, cpu) milliseconds per job of one sweep of ``n`` trivial jobs."""
    d = tempfile.mkdtemp(prefix="mushin-bench-")
    ctx = _compat.public_path(*public) if public is not None else nullcontext()
    try:
        with ctx:
            t, c = time.perf_counter(), time.process_time()
            Trivial().run(x=multirun(list(range(n))), working_dir=d, progress=False, overrides=extra)
            return (time.perf_counter() - t) / n * 1e3, (time.process_time() - c) / n * 1e3
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 and 200 jobs")
    ap.add_argument("--repeats", type=int, default=3, help="repeats at the smaller size (1 at the larger)")
    args = ap.parse_args()
    sizes = (50, 200) if args.quick else (200, 1000)
    configs: list[tuple[str, tuple[str, ...] | None, list[str]]] = [("patched (default)", None, [])]
    configs += [(f"public: {name}", (name,), []) for name in _compat.PATCHES]
    configs += [("public: all patches", (), [])]
    logging.getLogger("hydra").setLevel(logging.WARNING)
    per_job(20, None, [])  # warm up: imports, Hydra's plugin scan
    print(f"{'configuration':<40} {'jobs':>5} {'wall ms/job':>12} {'cpu ms/job':>11} {'+cpu vs patched':>16}")
    for n in sizes:
        reps = args.repeats if n == sizes[0] else 1
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in configs}
        for _ in range(reps):  # interleaved, so drifts of the machine's load hit every configuration
            for name, public, extra in configs:
                results[name].append(per_job(n, public, extra))
        base = statistics.median(c for _, c in results[configs[0][0]])
        for name, _, _ in configs:
            wall = statistics.median(w for w, _ in results[name])
            cpu = statistics.median(c for _, c in results[name])
            print(f"{name:<40} {n:>5} {wall:>12.2f} {cpu:>11.2f} {cpu - base:>+16.2f}", flush=True)
    n = sizes[0]
    wall, cpu = per_job(n, None, ["hydra.launcher.fast=false"])
    print(f"{'fast=false (Hydra composes every job)':<40} {n:>5} {wall:>12.2f} {cpu:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
