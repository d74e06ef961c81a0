"""``mushin-nb demo | serve | export``."""

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
    from ._workflows import MultiRunMetricsWorkflow

    wf = MultiRunMetricsWorkflow().load_from_dir(args.sweep_dir)
    ds = wf.to_xarray(include_working_subdirs_as_data_var=args.with_dirs)
    path = save_netcdf(ds, args.out, overwrite=args.overwrite)
    print(ds)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    try:
        from .notebook.serve import add_cli
    except ImportError:  # pragma: no cover - the notebook layer is part of the package
        add_cli = None
    if add_cli is not None:
        add_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
