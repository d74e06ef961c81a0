"""The ``mushin-nb`` command line: run the demo sweep, export a sweep directory to
NetCDF, check (and repair) a sweep directory, serve a workflow's sweep panel.

A user's mistake (a missing directory, a file that exists, a bad value) is one line
``mushin-nb <command>: error: ...`` on stderr naming the flag that fixes it, and exit
code 2; a sweep whose jobs failed exits 1.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ._errors import rephrase

_DESCRIPTION = "Hydra parameter sweeps as labeled xarray Datasets, from the command line."
_EPILOG = "`mushin-nb COMMAND --help` describes a command's flags."


class UserError(Exception):
    """A mistake the user can fix: said as one line ``mushin-nb <command>: error: ...``
    on stderr, with exit code ``code`` (2: a usage mistake; 1: a sweep that failed).

    Examples
    --------
    >>> main(["export", "no-such-dir", "out.nc"])  # the message goes to stderr
    2
    """

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# the engine's keyword arguments -> the CLI's flags, for the engine's messages
_FLAG_TERMS = [
    (re.compile(r"; pass overwrite=True to replace it"), "; add --overwrite to replace it"),
    (re.compile(r"\boverwrite=True\b"), "--overwrite"),
    (re.compile(r"\bresume=True\b"), "--resume"),
    (re.compile(r"\blauncher='([^']*)'"), r"--launcher \1"),
    (re.compile(r"\blauncher="), "--launcher "),
    (re.compile(r"\bworking_dir="), "-d/--working-dir "),
]


def in_flag_terms(message: str) -> str:
    """An engine message with its keyword arguments named as the CLI's flags.

    >>> in_flag_terms("x.nc already exists; pass overwrite=True to replace it (or choose another path).")
    'x.nc already exists; add --overwrite to replace it (or choose another path).'
    """
    return rephrase(message, _FLAG_TERMS)


def _demo_paths(out: Path, *, overwrite: bool, resume: bool) -> tuple[Path, Path]:
    """The demo's sweep directory and NetCDF file under ``--out``; an earlier demo's
    results are kept unless ``--overwrite`` (then removed) or ``--resume``."""
    from ._store import META_DIR

    if overwrite and resume:
        raise UserError("--overwrite and --resume: give one (replace the earlier results, or continue them).")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: it is a file, not a directory; choose a directory.")
    sweep, nc = out / "sweep", out / "lr_sweep.nc"
    is_sweep = (sweep / META_DIR).is_dir() or (sweep / "multirun.yaml").is_file()
    if sweep.exists() and not is_sweep:
        raise UserError(f"--out {out}: {sweep} exists and is not a demo sweep; choose another --out.")
    if resume and not is_sweep:
        raise UserError(f"--resume: {out} holds no earlier demo sweep; run without --resume to start one.")
    earlier = [str(p) for p in (sweep, nc) if p.exists()]
    if earlier and not (overwrite or resume):
        raise UserError(
            f"{' and '.join(earlier)} hold the results of an earlier demo; add --resume to continue that "
            "sweep (running only its unfinished jobs), --overwrite to replace them, or choose another --out."
        )
    if overwrite:
        if is_sweep:
            shutil.rmtree(sweep)
        nc.unlink(missing_ok=True)
    return sweep, nc


def _demo(args: argparse.Namespace) -> int:
    from . import save_netcdf
    from ._demo import LEARNING_RATES, SEEDS, demo_workflow, has_torch

    out = Path(args.out).expanduser().absolute()
    sweep_dir, nc = _demo_paths(out, overwrite=args.overwrite, resume=args.resume)
    out.mkdir(parents=True, exist_ok=True)
    wf = demo_workflow()
    backend = "torch" if has_torch() else "numpy (torch is not installed)"
    print(f"mushin-nb demo: {type(wf).__name__} over lr={LEARNING_RATES} x seed={SEEDS}, model in {backend}")
    t0 = time.perf_counter()
    started: list[Any] = []  # the run, as soon as it exists (a Ctrl-C may come at any point)
    try:
        run = _start_shielded(wf, sweep_dir, args, started)
        _wait_demo(wf, run, args)
    except KeyboardInterrupt:  # a Ctrl-C outside the wait (run.wait() says its own)
        raise _interrupted(started[0] if started else None, args) from None
    elapsed = time.perf_counter() - t0
    ds = wf.to_xarray()
    print(ds)
    print("\nmean accuracy per learning rate (over seeds):")
    mean = ds["accuracy"].mean("seed")
    for lr, acc in zip(mean["lr"].values, mean.values):
        print(f"  lr={lr:<6g} accuracy={acc:.3f}")
    path = save_netcdf(ds, nc, overwrite=True)  # an earlier file: only with --overwrite or --resume
    reused = f" ({run.skipped} reused from the earlier sweep)" if run.skipped else ""
    print(f"\n{ds.sizes['lr'] * ds.sizes['seed']} jobs{reused} in {elapsed:.2f} s; wrote {path}")
    return 0


def _start_demo(wf: Any, sweep_dir: Path, args: argparse.Namespace) -> Any:
    from . import multirun
    from ._demo import LEARNING_RATES, SEEDS

    try:
        return wf.start(
            lr=multirun(LEARNING_RATES),
            seed=multirun(SEEDS),
            working_dir=str(sweep_dir),
            resume=args.resume,
            verbose=args.verbose,
        )
    except (ValueError, TypeError, OSError, RuntimeError) as e:  # e.g. the task changed since
        text = in_flag_terms(str(e)).replace("resume='force'", "--overwrite (start again)")
        raise UserError(f"{text} Nothing was started or changed.") from None


def _start_shielded(wf: Any, sweep_dir: Path, args: argparse.Namespace, started: list[Any]) -> Any:
    """:func:`_start_demo` with a Ctrl-C during it held back until it returned (and the
    run put in ``started``): the sweep is then either not started or started and
    cancelled, never half started."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        started.append(_start_demo(wf, sweep_dir, args))
        return started[0]
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        run = _start_demo(wf, sweep_dir, args)
        started.append(run)
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise _interrupted(run, args)
    return run


def _wait_demo(wf: Any, run: Any, args: argparse.Namespace) -> None:
    """Wait for the demo's sweep; failures and Ctrl-C said in the CLI's flags."""
    from ._errors import SweepError

    try:
        run.wait(progress=not args.no_progress)
        run.raise_for_failures(label=type(wf).__name__)
    except KeyboardInterrupt:
        raise _interrupted(run, args) from None
    except SweepError as e:
        again = f"mushin-nb demo --out {_quoted(args.out)} --resume"
        advice = (
            "Fix the cause (e.g. free disk space), then"
            if e.fix == "resume_rest"
            else "Every finished result is kept; to run only the failed jobs,"
        )
        raise UserError(f"{e.summary}\n{advice} run `{again}`.", code=1) from None


def _interrupted(run: Any, args: argparse.Namespace) -> UserError:
    """Ctrl-C of the demo: its sweep cancelled (the running job ends), what was kept and
    the command that runs the rest."""
    if run is None:
        return UserError("interrupted before the sweep started; nothing was run.", code=130)
    run.cancel()
    run.join()
    s = run.status
    again = f"mushin-nb demo --out {_quoted(args.out)} --resume"
    return UserError(
        f"interrupted; kept {s['done']} finished of {s['total']} jobs in {run.sweep_dir}; "
        f"`{again}` runs the rest.",
        code=130,
    )


def _quoted(text: str) -> str:
    import shlex

    return shlex.quote(str(text))


def _export(args: argparse.Namespace) -> int:
    from ._dataset import save_netcdf
    from ._multirun import MultiRunMetricsWorkflow

    sweep_dir, out = Path(args.sweep_dir).expanduser(), Path(args.out).expanduser()
    if not sweep_dir.is_dir():
        what = "is a file, not a directory" if sweep_dir.exists() else "does not exist"
        raise UserError(
            f"SWEEP_DIR {args.sweep_dir}: it {what}; give a sweep directory (a run's working_dir)."
        )
    if out.is_dir():
        raise UserError(f"OUT {args.out}: it is a directory; give a file name, e.g. {out / 'sweep.nc'}.")
    if out.exists() and not args.overwrite:
        raise UserError(f"OUT {args.out} exists; add --overwrite to replace it, or choose another path.")
    try:
        wf = MultiRunMetricsWorkflow().load_from_dir(sweep_dir)
    except FileNotFoundError as e:  # not a sweep directory
        raise UserError(f"SWEEP_DIR {args.sweep_dir}: {e}") from None
    ds = wf.to_xarray(include_working_subdirs_as_data_var=args.with_dirs)
    path = save_netcdf(ds, out, overwrite=args.overwrite)
    print(ds)
    print(f"wrote {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ._check import main as check_main

    if args.break_lock and not args.repair:
        raise UserError("--break-lock only goes with --repair")
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
    from . import __version__

    p = argparse.ArgumentParser(prog="mushin-nb", description=_DESCRIPTION, epilog=_EPILOG)
    p.add_argument("--version", action="version", version=f"mushin-nb {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="run the learning-rate x seed sweep and save it to NetCDF",
        description="Run the learning-rate x seed sweep (torch if installed, else numpy) into OUT/sweep and "
        "save its Dataset to OUT/lr_sweep.nc. The results of an earlier demo in OUT are kept: add --resume "
        "to continue that sweep, or --overwrite to replace it.",
    )
    d.add_argument("--out", default="mushin-nb-demo", help="output directory (default: ./mushin-nb-demo)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument(
        "--resume",
        action="store_true",
        help="continue the earlier demo sweep in OUT: run only its unfinished jobs",
    )
    d.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in OUT")
    d.add_argument(
        "--verbose", action="store_true", help="show Hydra's launch lines and the task's log records"
    )
    d.set_defaults(func=_demo)
    e = sub.add_parser("export", help="write a sweep directory's Dataset to NetCDF")
    e.add_argument("sweep_dir", metavar="SWEEP_DIR", help="the sweep directory (the working_dir of a run)")
    e.add_argument("out", metavar="OUT", help="the .nc file to write")
    e.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
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
    import warnings

    args = build_parser().parse_args(argv)

    def show(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        # the engine's warnings (e.g. damaged files) as the command's own, without a source line
        text = in_flag_terms(str(message)).removeprefix("mushin_nb: ")
        print(f"mushin-nb {args.command}: warning: {text}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            return int(args.func(args) or 0)
    except UserError as e:
        return _say_error(args.command, str(e), e.code)
    except KeyboardInterrupt:
        return _say_error(args.command, "interrupted.", 130)
    except (OSError, ValueError, TypeError) as e:  # the engine's refusals: one line, in the CLI's terms
        return _say_error(args.command, in_flag_terms(str(e)), 2)


def _say_error(command: str, message: str, code: int) -> int:
    print(f"mushin-nb {command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
