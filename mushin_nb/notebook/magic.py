"""``%load_ext mushin_nb`` registers the ``%%mushin_sweep`` cell magic.

::

    %%mushin_sweep lr=0.01,0.1,1.0 seed=range(3) epochs=100 -o ds
    def task(lr: float, seed: int, epochs: int) -> dict:
        ...
        return dict(accuracy=acc)

The line holds Hydra overrides (``name=a,b,c``, ``range(...)``, ``choice(...)``
sweep; ``name=value`` is fixed) and options (``%%mushin_sweep?`` lists them).
This module imports IPython, never panel: the live view loads on first use.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import re
import symtable
import sys
import threading
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

__all__ = ["MushinMagics", "load_ipython_extension", "unload_ipython_extension", "split_line"]


def split_line(line: str) -> list[str]:
    """Split the magic's line on spaces outside quotes and brackets, keeping
    quotes (they matter to Hydra: ``name='a,b'`` is one string).

    >>> split_line("lr=0.1,1 name='a b' seed=range(0, 3) -o ds")
    ['lr=0.1,1', "name='a b'", 'seed=range(0, 3)', '-o', 'ds']
    """
    tokens: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    depth = 0
    prev = ""
    for ch in line:
        if quote is not None:
            cur.append(ch)
            if ch == quote and prev != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
            cur.append(ch)
        elif ch.isspace() and depth == 0:
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        prev = ch
    if quote is not None:
        raise UsageError(f"Unclosed quote {quote} in: {line}")
    if cur:
        tokens.append("".join(cur))
    return tokens


def _unquote(text: str | None) -> str | None:
    if text and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


# the engine's keyword arguments -> the magic's options, for the engine's refusals
_OPTION_TERMS = [
    (re.compile(r"\bresume='force'"), "--resume --force (resume='force')"),
    (re.compile(r"\bresume=True\b"), "--resume"),
    (re.compile(r"\bresume=False\b"), "no --resume"),
    (re.compile(r"\bworking_dir="), "-d/--working-dir "),
    (re.compile(r"\blauncher='([^']*)'"), r"--launcher \1"),
    (re.compile(r"\blauncher="), "--launcher "),
    (re.compile(r"\bjobs="), "-j/--jobs "),
    (re.compile(r"\bon_error='([^']*)'"), r"--on-error \1"),
    (re.compile(r"\bon_error="), "--on-error "),
]


def in_option_terms(message: str) -> str:
    """An engine message with its keyword arguments named as the magic's options.

    >>> in_option_terms("jobs=2 needs a parallel launcher: launcher='joblib'")
    '-j/--jobs 2 needs a parallel launcher: --launcher joblib'
    """
    for pat, repl in _OPTION_TERMS:
        message = pat.sub(repl, message)
    return message


_MISSING = object()


def _bound_names(code: str) -> set[str]:
    """The names a cell's code binds at the top level (def, class, import,
    assignment, for/with targets, ...), found without running it."""
    try:
        table = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError:
        return set()
    return {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}


def _is_workflow_class(obj: Any) -> bool:
    from mushin_nb._workflows import BaseWorkflow

    return inspect.isclass(obj) and issubclass(obj, BaseWorkflow) and obj is not BaseWorkflow


@magics_class
class MushinMagics(Magics):
    """The ``%%mushin_sweep`` cell magic."""

    @magic_arguments()
    @argument(
        "overrides",
        nargs="*",
        help="Hydra overrides: name=a,b,c / name=range(start,stop[,step]) / name=choice(a,b) sweep "
        "(one Dataset dimension each); name=value is fixed (a Dataset attribute). hydra.* settings "
        "pass through.",
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
    @argument(
        "--launcher",
        metavar="NAME",
        help="Hydra launcher: joblib, submitit_local, submitit_slurm, ray, basic (Hydra's own); default: "
        "mushin-nb's in-process launcher",
    )
    @argument("-j", "--jobs", metavar="N", type=int, help="parallel jobs (with --launcher joblib/submitit)")
    @argument(
        "--on-error",
        choices=["collect", "stop", "ignore"],
        default="collect",
        help="collect: run all, then raise SweepError if any failed (default); stop: no new job after a "
        "failure; ignore: warn only",
    )
    @argument("--save", metavar="PATH.nc", help="write the Dataset to this NetCDF file when the sweep ends")
    @argument("--overwrite", action="store_true", help="with --save: replace an existing file")
    @argument("--plot", metavar="METRIC", help="the metric the live view shows first")
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
        cell's value is the panel (also bound to ``NAME`` with ``-o``).

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
        ip = self.shell
        ns = ip.user_ns
        code = ip.transform_cell(cell) if cell.strip() else ""
        before = {n: ns.get(n, _MISSING) for n in _bound_names(code)}
        try:
            wf = self._workflow(args, cell)
            overrides = self._check_overrides(wf, args.overrides)
            working_dir = _unquote(args.working_dir)
            save = _unquote(args.save)
            if args.panel:
                return self._panel(wf, args, working_dir, save)
            if not args.no_view:
                from . import _deps

                _deps.pn()  # load panel and hvplot before the sweep starts, not while it runs
            run = self._start(wf, args, overrides, working_dir)
        except UsageError:
            for name, value in before.items():
                if value is _MISSING:
                    ns.pop(name, None)
                else:
                    ns[name] = value
            raise
        out = args.out

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
                view = LiveView(run, metric=args.plot, show_cancel=True, title=title)
                display(view.panel())
            else:
                # the cell blocks: plain HTML/PNG display updates, then the live view
                shown = BlockingDisplay(run, metric=args.plot, title=title)
        bind(run.dataset)

        if args.background:
            self._background(run, view, bind, save, args.overwrite)
            return None
        try:
            wf.wait(run, progress=args.no_view)
        finally:
            if shown is not None:
                shown.finish()
            ds = run.dataset
            bind(ds)
            if save and run.done:
                self._save(ds, save, args.overwrite)
        if args.no_view:
            s = run.status
            print(
                f"{type(wf).__name__}: {s['done']} of {s['total']} jobs done in {run.sweep_dir}",
                file=sys.stderr,
            )
        return None

    # ------------------------------------------------------------------ pieces
    def _check_options(self, args: Any) -> None:
        """Every check of the options alone, before anything runs."""
        from mushin_nb._store import META_DIR

        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"-o {args.out}: give a Python name to bind the Dataset to, e.g. -o ds.")
        if args.panel:
            return
        working_dir = _unquote(args.working_dir)
        save = _unquote(args.save)
        if args.force and not args.resume:
            raise UsageError("--force goes with --resume (reuse results of an earlier version of the task).")
        if args.resume and not working_dir:
            raise UsageError("--resume needs -d/--working-dir DIR: the directory of the sweep to resume.")
        if args.jobs is not None and args.jobs < 1:
            raise UsageError(f"-j/--jobs {args.jobs}: give a number of parallel jobs >= 1.")
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
            raise UsageError("--overwrite goes with --save PATH.nc (replace that file when the sweep ends).")
        if save:
            sp = Path(save).expanduser()
            if sp.is_dir():
                raise UsageError(
                    f"--save {save}: it is a directory; give a file name, e.g. --save {sp / 'results.nc'}."
                )
            if sp.exists() and not args.overwrite:
                raise UsageError(
                    f"--save {save}: the file exists; add --overwrite to replace it, or choose another path."
                )

    def _start(self, wf: Any, args: Any, overrides: list[str], working_dir: str | None) -> Any:
        """``wf.start(...)``; the engine's refusals as UsageErrors in the magic's terms."""
        from mushin_nb._execution import SweepBusy

        try:
            return wf.start(
                overrides=overrides,
                working_dir=working_dir,
                launcher=_unquote(args.launcher),
                jobs=args.jobs,
                on_error=args.on_error,
                resume="force" if (args.resume and args.force) else args.resume,
                with_log_configuration=False,
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

    def _parse(self, line: str) -> Any:
        tokens = split_line(line)
        parser = self.mushin_sweep.parser
        return parser.parse_intermixed_args(tokens)

    def _exec_body(self, cell: str) -> list[str]:
        """Run the body in the user's namespace; return the names of the
        top-level functions and classes it defines."""
        ip = self.shell
        code = ip.transform_cell(cell)
        tree = ast.parse(code)
        names = [
            n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        # cached like a cell, so inspect.getsource works (the task's hash for resume)
        filename = ip.compile.cache(code, ip.execution_count or 0, raw_code=cell)
        exec(compile(code, filename, "exec"), ip.user_global_ns, ip.user_ns)
        return names

    def _workflow(self, args: Any, cell: str) -> Any:
        from .panel import make_workflow

        ns = self.shell.user_ns
        defined = self._exec_body(cell) if cell.strip() else []
        if args.workflow:
            obj = ns.get(args.workflow)
            from mushin_nb._workflows import BaseWorkflow

            if obj is None:
                raise UsageError(f"--workflow {args.workflow}: no such name in the notebook's namespace.")
            if not (_is_workflow_class(obj) or isinstance(obj, BaseWorkflow)):
                raise UsageError(
                    f"--workflow {args.workflow}: it is a {type(obj).__name__}, not a workflow class "
                    "(a subclass of MultiRunMetricsWorkflow); use --task for a plain function."
                )
            return make_workflow(obj)
        if args.task:
            obj = ns.get(args.task)
            if obj is None:
                raise UsageError(f"--task {args.task}: no such name in the notebook's namespace.")
            if not (callable(obj)):
                raise UsageError(
                    f"--task {args.task}: it is a {type(obj).__name__}, not a function or workflow."
                )
            return make_workflow(obj)
        cands = [n for n in defined if inspect.isfunction(ns.get(n)) or _is_workflow_class(ns.get(n))]
        if "task" in cands and inspect.isfunction(ns.get("task")):
            return make_workflow(ns["task"])
        if len(cands) == 1:
            return make_workflow(ns[cands[0]])
        if not cands:
            raise UsageError(
                "The cell defines no task: define a function (e.g. `def task(lr: float) -> dict:` returning "
                "a dict of metrics) or a MultiRunMetricsWorkflow subclass in the cell, or pass "
                "--workflow NAME / --task NAME."
            )
        raise UsageError(
            f"The cell defines several functions or workflows ({', '.join(cands)}); say which one to "
            f"run with --task NAME (e.g. --task {cands[0]}), or name it `task`."
        )

    def _check_overrides(self, wf: Any, overrides: list[str]) -> list[str]:
        """Check each override against the task's signature; add the ``+`` Hydra
        needs for a key the base config lacks. Errors name the token."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from mushin_nb._overrides import has_value as _has_key

        from ._params import accepted_text, coerce, task_params

        params, var_kw = task_params(wf)
        by_name = {p.name: p for p in params}
        label = getattr(type(wf), "_mushin_label", f"{type(wf).__name__}.task")
        accepts = f"{label} accepts: {accepted_text(params, var_kw)}"
        parser = OverridesParser.create()
        out: list[str] = []
        given: set[str] = set()
        for tok in overrides:
            if "=" not in tok and not tok.startswith("~"):
                raise UsageError(
                    f"{tok!r} is not an override: write name=value (fixed) or name=a,b,c / "
                    f"name=range(0,3) (swept). {accepts}"
                )
            try:
                (o,) = parser.parse_overrides([tok])
            except Exception as e:
                msg = str(e).splitlines()[0]
                raise UsageError(
                    f"Cannot read the override {tok!r}: {msg}. Write name=value, name=a,b,c, "
                    "name=range(start,stop,step) or name=choice(a,b); quote a string holding a comma "
                    "or space: name='a, b'."
                ) from None
            key = o.key_or_group
            if key == "hydra" or key.startswith(("hydra.", "hydra/")):
                out.append(tok)
                continue
            name = o.get_key_element().lstrip("+~")
            top = name.split(".")[0]
            if top not in by_name and not var_kw:
                raise UsageError(f"{name!r} (in {tok!r}) is not a parameter of the task. {accepts}")
            if name in given:
                raise UsageError(f"{name!r} is given twice on the line; give it once.")
            given.add(top)
            p = by_name.get(top)
            if o.is_sweep_override():
                if not o.is_discrete_sweep():
                    raise UsageError(
                        f"{tok!r} is an interval sweep, which has no grid of values; give a list, "
                        "range(start,stop,step) or choice(a,b) instead."
                    )
                values = list(o.sweep_iterator())
            else:
                values = [o.value()]
            if p is not None and name == top:
                from mushin_nb._overrides import unquote as _unq

                for v in values:
                    try:
                        coerce(_unq(v), p)
                    except ValueError as e:
                        raise UsageError(f"In {tok!r}: {e}") from None
            if o.type.name == "CHANGE" and not _has_key(wf.eval_task_cfg, top):
                tok = "+" + tok
            out.append(tok)
        missing = [
            p.name
            for p in params
            if p.required and p.name not in given and not _has_key(wf.eval_task_cfg, p.name)
        ]
        if missing:
            example = " ".join(f"{m}=..." for m in missing)
            raise UsageError(
                f"No value for the required parameter{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}: add {example} to the line. {accepts}"
            )
        return out

    def _panel(self, wf: Any, args: Any, working_dir: str | None, save: str | None) -> Any:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from mushin_nb._overrides import unquote as _unq

        from .panel import sweep_panel

        initial: dict[str, Any] = {}
        parser = OverridesParser.create()
        for tok in args.overrides:
            (o,) = parser.parse_overrides([tok])
            if o.key_or_group.startswith("hydra"):
                continue
            name = o.get_key_element().lstrip("+~")
            if o.is_sweep_override():
                initial[name] = [_unq(v) for v in o.sweep_iterator()]
            else:
                initial[name] = _unq(o.value())
        if args.launcher:
            initial["launcher"] = _unquote(args.launcher)
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
            raise UsageError(f"%%mushin_sweep --panel: {e}") from None
        if args.out:
            self.shell.user_ns[args.out] = panel
        return panel

    @staticmethod
    def _save(ds: Any, path: str, overwrite: bool) -> None:
        from mushin_nb._dataset import save_netcdf

        p = save_netcdf(ds, path, overwrite=overwrite)
        print(f"mushin_nb: wrote {p}", file=sys.stderr)

    def _background(self, run: Any, view: Any, bind: Any, save: str | None, overwrite: bool) -> None:
        if view is not None:
            view.add_listener(bind)

        def finish() -> None:
            try:
                run.wait()
            except BaseException:
                pass
            if view is not None:
                view.join(30)
            ds = run.dataset
            bind(ds)
            if save:
                try:
                    self._save(ds, save, overwrite)
                except Exception as e:  # reported, never raised in a thread
                    print(f"mushin_nb: could not save {save}: {e}", file=sys.stderr)

        threading.Thread(target=finish, name="mushin-magic-finish", daemon=True).start()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mushin_nb``: registers ``%%mushin_sweep``."""
    ipython.register_magics(MushinMagics)


def unload_ipython_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.magics.get("cell", {})
    magics.pop("mushin_sweep", None)
