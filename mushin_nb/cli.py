"""``mushin-nb demo | serve | export | check``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from . import multirun, save_netcdf
    from ._demo import LEARNING_RATES, SEEDS, demo_workflow, has_torch

    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    wf = demo_workflow()
    backend = "torch" if has_torch() else "numpy (torch is not installed)"
    print(f"mushin-nb demo: {type(wf).__name__} over lr={LEARNING_RATES} x seed={SEEDS}, model in {backend}")
    t0 = time.perf_counter()
    wf.run(
        lr=multirun(LEARNING_RATES),
        seed=multirun(SEEDS),
        working_dir=str(out / "sweep"),
        progress=not args.no_progress,
        with_log_configuration=False,
    )
    elapsed = time.perf_counter() - t0
    ds = wf.to_xarray()
    print(ds)
    print("\nmean accuracy per learning rate (over seeds):")
    mean = ds["accuracy"].mean("seed")
    for lr, acc in zip(mean["lr"].values, mean.values):
        print(f"  lr={lr:<6g} accuracy={acc:.3f}")
    path = save_netcdf(ds, out / "lr_sweep.nc", overwrite=True)
    print(f"\n{ds.sizes['lr'] * ds.sizes['seed']} jobs in {elapsed:.2f} s; wrote {path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ._dataset import save_netcdf
    from ._multirun import MultiRunMetricsWorkflow

    wf = MultiRunMetricsWorkflow().load_from_dir(args.sweep_dir)
    ds = wf.to_xarray(include_working_subdirs_as_data_var=args.with_dirs)
    path = save_netcdf(ds, args.out, overwrite=args.overwrite)
    print(ds)
    print(f"wrote {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ._check import main as check_main

    if args.break_lock and not args.repair:
        print("mushin-nb check: --break-lock only goes with --repair", file=sys.stderr)
        return 2
    return check_main(args.sweep_dir, repair=args.repair, break_lock=args.break_lock)


def build_parser() -> argparse.ArgumentParser:
    """The ``mushin-nb`` argument parser: ``demo``, ``export``, ``check`` and (from the
    notebook layer) ``serve``.

    Examples
    --------
    >>> args = build_parser().parse_args(["check", "--repair", "sweep_dir"])
    >>> args.command, args.sweep_dir, args.repair, args.break_lock
    ('check', 'sweep_dir', True, False)
    """
    p = argparse.ArgumentParser(prog="mushin-nb", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the learning-rate x seed sweep and save it to NetCDF")
    d.add_argument("--out", default="mushin-nb-demo", help="output directory (default: ./mushin-nb-demo)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=_demo)
    e = sub.add_parser("export", help="write a sweep directory's Dataset to NetCDF")
    e.add_argument("sweep_dir")
    e.add_argument("out", help="the .nc file to write")
    e.add_argument("--overwrite", action="store_true")
    e.add_argument("--with-dirs", action="store_true", help="add the working_subdir variable")
    e.set_defaults(func=_export)
    c = sub.add_parser(
        "check",
        help="report a sweep directory's health (exit 1 if damaged); --repair rebuilds what can be rebuilt",
        description="Report a sweep directory's health: runs, cells done/failed/cancelled/damaged/missing, "
        "damaged files by name, damaged index lines, stale temporary files, the lock holder. Exits 0 if "
        "healthy, 1 if damaged, 2 if DIR is not a sweep directory.",
    )
    c.add_argument("sweep_dir", metavar="DIR", help="the sweep directory (the working_dir= of a run)")
    c.add_argument(
        "--repair",
        action="store_true",
        help="rebuild the index (from the job directories' result files), the manifest (from the per-run "
        "copies) and damaged result files (from their index lines); remove stale temporary files",
    )
    c.add_argument(
        "--break-lock",
        action="store_true",
        help="with --repair: remove the directory's lock even if its holder looks alive (only when you "
        "are sure that process is dead; a stale lock is removed without it)",
    )
    c.set_defaults(func=_check)
    try:
        from .notebook.serve import add_cli
    except ImportError:  # pragma: no cover - the notebook layer is part of the package
        add_cli = None
    if add_cli is not None:
        add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``mushin-nb`` with ``argv`` (default: the command line); returns the exit code.

    Examples
    --------
    >>> import tempfile
    >>> main(["check", tempfile.mkdtemp()])  # not a sweep directory
    2
    """
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
