"""``%load_ext mushin_nb`` registers the ``%%mushin_sweep`` cell magic.

::

    %%mushin_sweep lr=0.01,0.1,1.0 seed=range(3) epochs=100 -o ds
    def task(lr: float, seed: int, epochs: int) -> dict:
        ...
        return dict(accuracy=acc)

The line holds Hydra overrides (``name=a,b,c``, ``range(...)``, ``choice(...)``
sweep; ``name=value`` is fixed) and options (``%%mushin_sweep?`` lists them).
This module imports IPython, never panel: the live view loads on first use.

The magic is thin: it reads the line (:mod:`._line`, with the engine's override
parser and signature check), runs the body and finds the task (:mod:`._cell`), calls
``workflow.start(...)`` and shows the run (:mod:`.view`). Every refusal of the engine
is said in the options' terms (:func:`in_option_terms`).
"""

from __future__ import annotations

import inspect
import keyword
import sys
import threading
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .._launchers import DEFAULT_LAUNCHER, LAUNCHERS, resolve_launcher, workers_overrides
from .._store import META_DIR
from ._cell import bound_names, exec_body, find_workflow, restore, snapshot
from ._line import (
    LineOverrides,
    check_against_task,
    in_option_terms,
    read_overrides,
    split_line,
    strip_quotes,
)
from ._params import task_label

__all__ = [
    "MushinMagics",
    "load_ipython_extension",
    "unload_ipython_extension",
    "split_line",
    "in_option_terms",
]

# the option's help, from the launcher table (the one list of launcher names)
_LAUNCHER_HELP = (
    "the launcher: "
    + ", ".join(i.name for i in LAUNCHERS if i.name != DEFAULT_LAUNCHER)
    + f", or an installed Hydra launcher plugin's name; default: {DEFAULT_LAUNCHER} (in-process)"
)
_JOBS_HELP = "parallel jobs (with --launcher " + "/".join(i.name for i in LAUNCHERS if i.workers) + ")"


def _adaptive_values(args: Any) -> tuple[dict[str, Any], list[str]]:
    """The line's ``name=adaptive(low, high, ...)`` values (``adaptive_range``), and
    its other overrides."""
    from .._adaptive import split_adaptive

    try:
        adaptive, tokens = split_adaptive(args.overrides)
    except ValueError as e:
        raise UsageError(f"%%mushin_sweep: {e}") from None
    if adaptive and args.panel:
        raise UsageError(
            f"--panel with {', '.join(f'{n}=adaptive(...)' for n in adaptive)}: the panel takes values to "
            "sweep; drop --panel to run the adaptive sweep (a RobustnessCurve's panel refines adaptively)."
        )
    return adaptive, tokens


def _signature_fns(wf: Any) -> list[Any]:
    """The functions the line's values go to: the task, and ``pre_task`` if the
    workflow defines its own."""
    from .. import BaseWorkflow

    fns = [wf.task]
    if inspect.getattr_static(type(wf), "pre_task") is not inspect.getattr_static(BaseWorkflow, "pre_task"):
        fns.append(wf.pre_task)
    return fns


@magics_class
class MushinMagics(Magics):
    """The ``%%mushin_sweep`` cell magic."""

    @magic_arguments()
    @argument(
        "overrides",
        nargs="*",
        help="Hydra overrides: name=a,b,c / name=range(start,stop[,step]) / name=choice(a,b) sweep "
        "(one Dataset dimension each); name=value is fixed (a Dataset attribute); "
        "name=adaptive(low,high[,npoints_goal=..,...]) is chosen as the sweep goes, where the results "
        "bend (adaptive_range's settings). hydra.* settings pass through.",
    )
    @argument("-o", "--out", metavar="NAME", help="bind the Dataset to NAME (and the SweepRun to NAME_run)")
    @argument(
        "--workflow",
        metavar="NAME",
        help="run the workflow class NAME from the namespace (body may be empty)",
    )
    @argument(
        "--task", metavar="NAME", help="the task function or workflow to run, if the cell defines several"
    )
    @argument(
        "-d", "--working-dir", metavar="DIR", help="the sweep directory (default: a new one under ./multirun)"
    )
    @argument(
        "--resume", action="store_true", help="reuse the results already in --working-dir; run only the rest"
    )
    @argument(
        "--force",
        action="store_true",
        help="with --resume: also reuse results computed by an earlier version of the task",
    )
    @argument("--launcher", metavar="NAME", help=_LAUNCHER_HELP)
    @argument("-j", "--jobs", metavar="N", type=int, help=_JOBS_HELP)
    @argument(
        "--on-error",
        choices=["collect", "stop", "ignore"],
        default="collect",
        help="collect: run all, then raise SweepError if any failed (default); stop: no new job after a "
        "failure; ignore: warn only",
    )
    @argument(
        "--save",
        metavar="PATH.nc",
        help="write the Dataset to this NetCDF file while the sweep runs (final when it ends)",
    )
    @argument("--overwrite", action="store_true", help="with --save: replace an existing file")
    @argument("--plot", metavar="METRIC", help="the metric the live view shows first")
    @argument(
        "--kind",
        metavar="KIND",
        help="the plot kind the live view shows (with two or more swept parameters): heatmap (default), "
        "lines, or a kind registered with mushin_nb.notebook.plots.register_plot_kind",
    )
    @argument(
        "--background",
        action="store_true",
        help="return at once; NAME is rebound to the current Dataset as jobs finish and NAME_run.dataset "
        "is always live; the view gets a Cancel button",
    )
    @argument(
        "--panel",
        action="store_true",
        help="show the sweep panel pre-filled from this line instead of running",
    )
    @argument("--no-view", action="store_true", help="no live view (a progress bar instead)")
    @argument(
        "--verbose",
        action="store_true",
        help="show Hydra's launch lines and the task's log records in the cell (they always go "
        "to each job's log file)",
    )
    @line_cell_magic
    def mushin_sweep(self, line: str, cell: str | None = None) -> Any:
        """Run a parameter sweep of the task the cell defines, with Hydra.

        As a line magic (``%mushin_sweep --workflow NAME ...``) it runs a workflow
        or function already defined (``--workflow`` / ``--task``).

        The body runs in the notebook's namespace. The task is the function named
        ``task``, else the only function or workflow class the cell defines (else
        pass ``--task NAME``); a plain function becomes a ``MultiRunMetricsWorkflow``
        subclass named after it.

        By default the cell blocks while a live view updates (so "Run All" works);
        the stop button cancels the sweep and keeps the finished results (bound to
        ``-o NAME``). The bound Dataset has one dimension per swept parameter, one
        variable per metric, a ``status`` variable (done/failed/cancelled) and the
        fixed parameters as attributes. With ``--background`` the cell returns at
        once: ``NAME`` is rebound to the latest Dataset each time the view redraws
        and at the end, and ``NAME_run`` is the live ``SweepRun``
        (``NAME_run.wait()``, ``.cancel()``, ``.dataset``). With ``--panel`` the
        cell's value is the panel (also bound to ``NAME`` with ``-o``). ``--plot`` and
        ``--kind`` choose the metric and the plot kind shown, while the cell blocks
        (a PNG) and after (the interactive view) alike.

        A refused line (a bad option or value, another sweep running in this
        kernel, a sweep directory another process is writing) starts nothing and
        changes nothing: no file is written, ``NAME`` and ``NAME_run`` keep their
        values, and the names the body bound are put back; the error says why in
        the options' terms.
        """
        cell = cell or ""
        args = self._parse(line)
        # a refused call changes nothing: the options are checked before the body
        # runs, and a refusal after it puts back the names the body bound
        self._check_options(args)
        shell: Any = self.shell
        ns = shell.user_ns
        before = snapshot(ns, bound_names(shell.transform_cell(cell) if cell.strip() else ""))
        try:
            adaptive, tokens = _adaptive_values(args)
            overrides = read_overrides(tokens)
            for name, r in adaptive.items():  # checked against the task with their low bound
                if name in overrides.names:
                    raise UsageError(f"{name!r} is given twice on the line; give it once.")
                overrides.names[name], overrides.where[name] = [r.low], f"{name}=adaptive(...)"
            defined = exec_body(shell, cell) if cell.strip() else []
            wf = find_workflow(ns, defined, args.workflow, args.task)
            check_against_task(_signature_fns(wf), overrides, base_cfg=wf.eval_task_cfg, label=task_label(wf))
            if args.panel:
                return self._panel(wf, args, overrides)
            if not args.no_view:
                from . import _deps

                _deps.pn()  # load panel and hvplot before the sweep starts, not while it runs
            run = self._start(wf, args, overrides, adaptive)
        except UsageError:
            restore(ns, before)
            raise
        self._show_and_wait(wf, run, args)
        return None

    # ------------------------------------------------------------------ pieces
    def _parse(self, line: str) -> Any:
        tokens = split_line(line)
        magic: Any = self.mushin_sweep
        return magic.parser.parse_intermixed_args(tokens)  # the parser @magic_arguments made

    def _check_options(self, args: Any) -> None:
        """Every check of the options alone, before anything runs."""
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"-o {args.out}: give a Python name to bind the Dataset to, e.g. -o ds.")
        if args.kind is not None:
            from .plots import plot_kinds

            names = [k.name for k in plot_kinds(automatic=False)]
            if args.kind not in names:
                raise UsageError(f"--kind {args.kind}: not a plot kind; choose one of {', '.join(names)}.")
        if args.panel:
            return
        if args.force and not args.resume:
            raise UsageError("--force goes with --resume (reuse results of an earlier version of the task).")
        if args.jobs is not None and args.jobs < 1:
            raise UsageError(f"-j/--jobs {args.jobs}: give a number of parallel jobs >= 1.")
        if args.launcher is not None or args.jobs is not None:
            try:  # the launcher table's rules: a known launcher, jobs only for a parallel one
                info = resolve_launcher(strip_quotes(args.launcher))
                if args.jobs is not None:
                    workers_overrides(info, args.jobs)
            except (ValueError, TypeError) as e:
                raise UsageError(
                    f"%%mushin_sweep: {in_option_terms(str(e))} Nothing was started or changed."
                ) from None
        self._check_paths(args)

    @staticmethod
    def _check_paths(args: Any) -> None:
        working_dir = strip_quotes(args.working_dir)
        save = strip_quotes(args.save)
        if args.resume and not working_dir:
            raise UsageError("--resume needs -d/--working-dir DIR: the directory of the sweep to resume.")
        if working_dir:
            wd = Path(working_dir).expanduser()
            if wd.exists() and not wd.is_dir():
                raise UsageError(
                    f"-d/--working-dir {working_dir}: it is a file, not a directory; choose a directory."
                )
            if args.resume and not (wd / META_DIR).is_dir():
                raise UsageError(
                    f"--resume: {working_dir} holds no mushin_nb sweep to resume (no {META_DIR}/ in it); "
                    "check -d/--working-dir, or drop --resume to start a new sweep there."
                )
        if args.overwrite and not save:
            raise UsageError("--overwrite goes with --save PATH.nc (replace that file).")
        if save:
            sp = Path(save).expanduser()
            if sp.is_dir():
                raise UsageError(
                    f"--save {save}: it is a directory; give a file name, e.g. --save {sp / 'results.nc'}."
                )
            if sp.exists() and not (args.overwrite or args.resume):
                raise UsageError(
                    f"--save {save}: the file exists; add --overwrite to replace it (--resume continues it), "
                    "or choose another path."
                )

    def _start(self, wf: Any, args: Any, overrides: LineOverrides, adaptive: Any = None) -> Any:
        """``wf.start(...)`` (``adaptive``: the line's ``name=adaptive(...)`` values); the
        engine's refusals as UsageErrors in the magic's terms."""
        from .._execution import SweepBusy

        save = strip_quotes(args.save)
        if save:  # absolute now: an in-process job changes the current directory
            args.save = str(Path(save).expanduser().absolute())
        try:
            run = wf.start(
                overrides=overrides.tokens,
                working_dir=strip_quotes(args.working_dir),
                launcher=strip_quotes(args.launcher),
                jobs=args.jobs,
                on_error=args.on_error,
                resume="force" if (args.resume and args.force) else args.resume,
                verbose=args.verbose,
                **(adaptive or {}),
            )
        except SweepBusy:
            raise UsageError(
                "%%mushin_sweep: another sweep is running in this kernel, and sweeps run one at a time "
                "(Hydra's state is process-wide). Wait for it to end, or stop it (its view's stop button, "
                "or NAME_run.cancel() for one started with -o NAME), then run this cell again. Nothing was "
                "started or changed."
            ) from None
        except (ValueError, TypeError, OSError, RuntimeError) as e:
            # bad values the engine found, or the sweep directory locked by another process
            raise UsageError(
                f"%%mushin_sweep: {in_option_terms(str(e))} Nothing was started or changed."
            ) from None
        if args.save and hasattr(run, "save"):  # --save: written while the sweep runs, final at its end
            try:
                run.save(args.save, overwrite=True)
            except Exception as e:  # the sweep runs on; the file is written when it ends
                print(f"mushin_nb: {args.save} is written when the sweep ends ({e})", file=sys.stderr)
        return run

    def _show_and_wait(self, wf: Any, run: Any, args: Any) -> None:
        """Show the run (a live view, or a progress bar), bind ``-o NAME``, and wait
        for it unless ``--background``; save with ``--save``."""
        ns = self.shell.user_ns if self.shell is not None else {}
        out, save = args.out, strip_quotes(args.save)

        def bind(ds: Any) -> None:
            if out:
                ns[out] = ds
                ns[f"{out}_run"] = run

        view = shown = None
        if not args.no_view:
            from .view import BlockingDisplay, LiveView

            title = type(wf).__name__
            if args.background:
                from IPython.display import display

                # the kernel is free: Panel's comm carries the updates (made on the
                # kernel's main thread, see view.py)
                view = LiveView(run, metric=args.plot, kind=args.kind, show_cancel=True, title=title)
                display(view.panel())
            else:
                # the cell blocks: plain HTML/PNG display updates, then the live view
                shown = BlockingDisplay(run, metric=args.plot, kind=args.kind, title=title)
        bind(run.dataset)
        if args.background:
            self._background(run, view, bind, save, args.overwrite)
            return
        try:
            _wait(wf, run, args)
        finally:
            if shown is not None:
                shown.finish()
            ds = run.dataset
            bind(ds)
            if save and run.done:
                self._save(run, save)
        if args.no_view:
            s = run.status
            print(
                f"{type(wf).__name__}: {s['done']} of {s['total']} jobs done in {run.sweep_dir}",
                file=sys.stderr,
            )

    def _panel(self, wf: Any, args: Any, overrides: LineOverrides) -> Any:
        from .panel import sweep_panel

        initial = overrides.initial()
        working_dir, save = strip_quotes(args.working_dir), strip_quotes(args.save)
        if args.launcher:
            initial["launcher"] = strip_quotes(args.launcher)
        settings = [t for t in overrides.hydra if t.lstrip("+").startswith("hydra.launcher.")]
        if settings:  # the panel's "launcher settings" field
            initial["launcher_settings"] = " ".join(settings)
        if working_dir:
            initial["working_dir"] = working_dir
        if args.resume:
            initial["resume"] = True  # the panel's checkbox; 'force' is an API/magic option
        if args.jobs is not None:
            initial["workers"] = args.jobs
        initial["on_error"] = args.on_error
        if save:
            initial["save_path"] = save
        if args.plot:
            initial["metric"] = args.plot
        try:
            panel = sweep_panel(wf, **initial)
        except (TypeError, ValueError) as e:
            raise UsageError(f"%%mushin_sweep --panel: {in_option_terms(str(e))}") from None
        if args.out and self.shell is not None:
            self.shell.user_ns[args.out] = panel
        return panel

    @staticmethod
    def _save(run: Any, path: str) -> None:
        if hasattr(run, "save"):
            p = run.save(path, overwrite=True)  # final already if it was written as the sweep ran
        else:  # a run that writes no file as it goes
            from .._dataset import save_netcdf

            p = save_netcdf(run.dataset, path, overwrite=True)
        print(f"mushin_nb: wrote {p}", file=sys.stderr)

    def _background(self, run: Any, view: Any, bind: Any, save: str | None, overwrite: bool) -> None:
        """``--background``: ``NAME`` is rebound at each redraw of the view, and to the final
        Dataset when the run ends, before ``NAME_run.wait()`` returns and ``NAME_run.done``
        is true (the run's ``on_finish``, in the sweep's thread: a cell that waits for the
        run blocks the kernel's main thread, where the view redraws, so the end cannot wait
        for a redraw); a redraw that read the Dataset before the end never rebinds ``NAME``
        after it. ``--save``: the file is final before ``wait()`` returns, too."""
        lock = threading.Lock()
        ended = threading.Event()

        def on_redraw(ds: Any) -> None:
            with lock:
                if not ended.is_set():
                    bind(ds)

        def at_end(_run: Any = None) -> None:
            with lock:
                if ended.is_set():
                    return
                ended.set()
                bind(run.dataset)
            if save:
                try:
                    self._save(run, save)
                except Exception as e:  # reported, never raised in the sweep's thread
                    print(f"mushin_nb: could not save {save}: {e}", file=sys.stderr)

        if view is not None:
            view.add_listener(on_redraw)
        run.on_finish(at_end)

        def backstop() -> None:  # a run that ended while at_end was being registered
            run.join(None)
            at_end()

        threading.Thread(target=backstop, name="mushin-magic-finish", daemon=True).start()


def _wait(wf: Any, run: Any, args: Any) -> None:
    """``wf.wait(run)`` with its messages in the cell's terms: a failed sweep is a
    ``SweepError`` whose advice names the cell's options, shown without a traceback."""
    from .._errors import SweepError

    try:
        try:
            run.wait(progress=args.no_view)
        except KeyboardInterrupt:
            if not run.done:
                wf.collect(run)  # the partial grid now; again when the sweep ends
            s = run.status
            kept = f" ({args.out} has them)" if args.out else ""
            print(
                f"mushin_nb: interrupted; kept {s['done']} finished of {s['total']} cells{kept} in "
                f"{run.sweep_dir}; run the cell again with {_resume_options(run.sweep_dir, args)} to run the rest.",
                file=sys.stderr,
            )
            raise
        fails = run.failures
        if run.on_error == "ignore" and fails:  # said here, in the cell's terms (not the API's warning)
            print(
                f"mushin_nb: {len(fails)} of {run.status['total']} jobs failed (--on-error ignore); first: "
                f"{fails[0].line()}. Tracebacks in each job's directory under {run.sweep_dir}.",
                file=sys.stderr,
            )
            return
        run.raise_for_failures(label=type(wf).__name__)
    except SweepError as e:
        raise e.in_terms(cell_advice(e, args), summary=in_option_terms(e.summary)) from None


def _resume_options(sweep_dir: Any, args: Any, force: bool = False) -> str:
    """The options that resume ``sweep_dir`` from this cell: ``-d DIR --resume``."""
    d = str(sweep_dir)
    d = repr(d) if any(c.isspace() or c in "'\"" for c in d) else d
    out = "" if args.out else " -o NAME"
    return f"-d {d} --resume{' --force' if force else ''}{out}"


def cell_advice(err: Any, args: Any) -> str:
    """A :class:`~mushin_nb.SweepError`'s fix (``err.fix``) in the magic's options.

    >>> from types import SimpleNamespace
    >>> from mushin_nb import SweepError
    >>> e = SweepError("2 of 4 jobs failed", sweep_dir="/tmp/s", fix="resume_rest")
    >>> cell_advice(e, SimpleNamespace(out="ds"))
    'Fix the cause (e.g. free disk space), then run the cell again with -d /tmp/s --resume to run the rest.'
    """
    from .._store import ERROR_TXT

    if err.fix == "resume_rest":
        return (
            "Fix the cause (e.g. free disk space), then run the cell again with "
            f"{_resume_options(err.sweep_dir, args)} to run the rest."
        )
    if err.fix != "rerun_failed":
        return ""
    kept = f"in {args.out} (the -o variable)" if args.out else f"in {err.sweep_dir} (-o NAME binds them)"
    return (
        f"Every finished result is kept {kept}; tracebacks in each job's {ERROR_TXT} under "
        f"{err.sweep_dir}. To run only the failed cells, run the cell again with "
        f"{_resume_options(err.sweep_dir, args)} if the failure was outside the task (data, resources), "
        f"or with {_resume_options(err.sweep_dir, args, force=True)} after fixing the task's code "
        "(--resume alone refuses to mix results of two versions of a task)."
    )


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mushin_nb``: registers ``%%mushin_sweep``."""
    ipython.register_magics(MushinMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext mushin_nb``: removes ``%%mushin_sweep``."""
    magics = ipython.magics_manager.magics.get("cell", {})
    magics.pop("mushin_sweep", None)
