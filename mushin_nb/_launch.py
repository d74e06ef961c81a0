"""Starting a sweep: validate everything, then claim, then touch the disk.

``plan_sweep`` checks every argument and builds the whole plan of a sweep (its
grid, where it goes, the Hydra overrides, the launcher) without touching the disk
or any object. ``start_sweep`` then claims the kernel's sweep slot and the sweep
directory's lock, checks what needs the directory (resume), and only then writes:
a refused call changes nothing, on disk or in memory.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _store
from ._errors import refusal
from ._execution import ON_ERROR, SweepRun
from ._job import JobRunner, task_hash
from ._launchers import (
    LAUNCHERS,
    LauncherInfo,
    check_launcher_settings,
    hydra_group_options,
    registered_hydra_launchers,
    resolve_launcher,
    settings_overrides,
    unknown_name_hint,
    workers_overrides,
)
from ._overrides import has_node, parse_override, unquote
from ._quiet import check_verbose, launch_logging, logging_overrides
from ._signature import check_sweep_against_task
from ._store import JobResult
from ._sweep import SweepSpec, build_spec, render_value

__all__ = ["SweepPlan", "plan_sweep", "start_sweep"]


@dataclass
class SweepPlan:
    """Everything a sweep needs, checked, before anything is written."""

    spec: SweepSpec
    sweep_dir: Path | None  # None: a new unique directory under ./multirun
    hydra_overrides: list[str]  # the user's hydra.* / group overrides (without hydra.sweep.dir)
    sweeper: str | None
    launcher: str  # the Hydra launcher config name
    jobs_overrides: list[str]
    on_error: str
    resume: bool | str
    workflow_name: str
    workflow_path: str
    task_hash: str
    run_id: str
    task: Callable[[Any], Any]
    pre_task: Callable[[Any], Any] | None
    launch_kwargs: dict[str, Any] = field(default_factory=dict)
    cfg: Any = None
    verbose: bool = False  # Hydra's lines and the task's log records on stderr too (see _quiet)


def _available_sweepers() -> list[str]:
    return hydra_group_options("hydra/sweeper")


def _check_hydra_choices(hydra_ovs: list[str]) -> None:
    """A ``hydra/sweeper=NAME`` override names a sweeper Hydra can find, and
    ``hydra.launcher`` / ``hydra.sweeper`` are not given a plain value (Hydra's config
    group is ``hydra/launcher``): refused here, before any directory exists."""
    for o in hydra_ovs:
        key, _, value = o.partition("=")
        key = key.strip().lstrip("+~")
        if key == "hydra/sweeper" and value not in (known := _available_sweepers()):
            raise ValueError(
                f"overrides: hydra/sweeper={value} is not a sweeper this environment has; "
                f"{unknown_name_hint(value, known)}choose one of {', '.join(map(repr, known))}."
            )
        if key in ("hydra.launcher", "hydra.sweeper"):
            kind = key.rpartition(".")[2]
            raise ValueError(
                f"overrides: {o!r} sets Hydra's {kind} config to a plain value; choose the {kind} with "
                f"{kind}={value!r} (or overrides=['hydra/{kind}={value}']), and its settings with "
                f"overrides=['hydra.{kind}.<setting>=...']."
            )


def _choose_launcher(launcher: str | None, hydra_ovs: list[str]) -> LauncherInfo:
    """The launcher of a sweep: ``launcher=`` (a name of the launcher table, or a Hydra
    launcher config name), or a ``hydra/launcher=...`` override, or the default."""
    given = next(
        (o.partition("=")[2] for o in hydra_ovs if o.partition("=")[0].lstrip("+") == "hydra/launcher"),
        None,
    )
    if given is None:
        return resolve_launcher(launcher)
    if launcher is not None:
        raise ValueError(
            f"launcher={launcher!r} and overrides=['hydra/launcher={given}'] both choose the launcher; give it once."
        )
    known = registered_hydra_launchers()
    if given not in known:
        raise ValueError(
            f"overrides: hydra/launcher={given} is not a launcher this environment has; "
            f"{unknown_name_hint(given, known)}choose one of {', '.join(repr(n) for n in known)} "
            "(or give launcher=... a name of the launcher table, e.g. launcher='joblib')."
        )
    return next((i for i in LAUNCHERS if i.hydra == given), LauncherInfo(given, given))


def _launcher_and_overrides(
    launcher: str | None, jobs: int | None, settings: Mapping[str, Any] | None, hydra_ovs: list[str]
) -> tuple[LauncherInfo, list[str]]:
    """The launcher of a sweep and its overrides: ``jobs=N`` as its worker count and
    ``launcher_settings={...}``. A setting the launcher does not have (there or in
    ``overrides``) and a setting given twice are refused here, before anything runs."""
    info = _choose_launcher(launcher, hydra_ovs)
    out = workers_overrides(info, jobs) if jobs is not None else []
    check_launcher_settings(info, hydra_ovs)
    return info, out + _settings(info, settings, hydra_ovs + out)


def _settings(info: LauncherInfo, settings: Mapping[str, Any] | None, given: list[str]) -> list[str]:
    """``launcher_settings={...}`` as Hydra overrides; a setting also given another way
    (``jobs=``, ``overrides=['hydra.launcher.<setting>=...']``) is refused."""
    out = settings_overrides(info, settings)
    before = {o.partition("=")[0].lstrip("+~"): o for o in given}
    for o in out:
        key = o.partition("=")[0].lstrip("+")
        if key in before:
            raise ValueError(
                f"launcher_settings[{key.rpartition('.')[2]!r}] and {before[key]!r} (from "
                f"{'jobs=' if key == info.workers else 'overrides='}) both set {key}; give it once."
            )
    return out


def _sweep_dir_from_overrides(hydra_ovs: list[str]) -> tuple[str | None, list[str]]:
    """``hydra.sweep.dir=...`` from the user's overrides (its value, parsed by Hydra's
    grammar), and the other overrides."""
    rest: list[str] = []
    found: str | None = None
    for o in hydra_ovs:
        k = o.partition("=")[0].lstrip("+")
        if k == "hydra.sweep.dir":
            found = str(unquote(parse_override(o).value()))
        else:
            rest.append(o)
    return found, rest


def _resolve_dir_text(text: str) -> str:
    if "${" not in text:
        return text
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    setup_globals()
    return str(OmegaConf.create({"d": text}).d)


def _check_call(
    on_error: str, resume: bool | str, working_dir: Any, jobs: int | None, overrides: Any
) -> None:
    """The arguments of ``run``/``start`` that need nothing else to be checked."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}: choose one of {', '.join(map(repr, ON_ERROR))}")
    if resume not in (True, False, "force") or not isinstance(resume, (bool, str)):
        raise ValueError(f"resume={resume!r}: use True, False or 'force'")
    if working_dir is not None and not isinstance(working_dir, (str, Path)):
        raise TypeError(f"working_dir={working_dir!r}: give a directory path (str or pathlib.Path)")
    if resume and working_dir is None:
        raise ValueError("resume=True needs working_dir=<the sweep directory to resume>")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs={jobs!r}: give a number of parallel workers >= 1 (or leave it out)")
    if overrides is not None and (isinstance(overrides, str) or not isinstance(overrides, (list, tuple))):
        raise TypeError(
            f"overrides={overrides!r}: give a list of Hydra override strings, e.g. overrides=['+x=1,2']"
        )


def _check_signature(workflow: Any, spec: SweepSpec, signature: Sequence[Callable[..., Any]]) -> None:
    """The sweep against the task's signature; a task parameter the base config lacks
    gets Hydra's ``+``, as keyword values do."""
    check_sweep_against_task(
        signature,
        names={p.name: p.values for p in spec.params if not p.group},
        groups={p.name for p in spec.params if p.group},
        base_cfg=workflow.eval_task_cfg,
        label=f"{type(workflow).__name__}.task",
        allow_unknown=True,  # rai mushin: a name the task does not take still labels the Dataset
    )
    for p in spec.params:
        if p.prefix == "" and not p.group and not has_node(workflow.eval_task_cfg, p.name):
            p.prefix = "+"


def _sweep_dir_of(working_dir: str | Path | None, spec: SweepSpec) -> tuple[Path | None, list[str]]:
    """Where the sweep goes (``working_dir``, else ``hydra.sweep.dir`` in the overrides,
    else None: a new directory), and the other Hydra overrides."""
    sweep_dir_text, hydra_ovs = _sweep_dir_from_overrides(spec.hydra_overrides)
    if working_dir is not None:
        sweep_dir: Path | None = Path(working_dir).absolute()
    elif sweep_dir_text is not None:
        sweep_dir = Path(_resolve_dir_text(sweep_dir_text)).absolute()
    else:
        sweep_dir = None
    if sweep_dir is not None and "${" in str(sweep_dir):
        raise ValueError(
            f"working_dir={str(sweep_dir)!r} contains '${{': Hydra reads it in its job paths as an "
            "interpolation, so the jobs' files would land elsewhere. Choose a directory name without '${'."
        )
    if sweep_dir is not None and sweep_dir.exists() and not sweep_dir.is_dir():
        raise NotADirectoryError(
            f"working_dir={str(sweep_dir)!r} is a file, not a directory; choose a directory"
        )
    return sweep_dir, hydra_ovs


@refusal  # a bad argument: IPython shows the caller's frames and the message only
def plan_sweep(
    workflow: Any,
    *,
    working_dir: str | Path | None,
    sweeper: str | None,
    launcher: str | None,
    overrides: list[str] | None,
    task: Callable[[Any], Any],
    pre_task: Callable[[Any], Any] | None,
    on_error: str,
    resume: bool | str,
    jobs: int | None,
    workflow_overrides: Mapping[str, Any],
    raw_string_keys: Iterable[str],
    launch_kwargs: Mapping[str, Any],
    signature: Sequence[Callable[..., Any]] = (),
    launcher_settings: Mapping[str, Any] | None = None,
    verbose: bool = False,
) -> SweepPlan:
    """Check every argument of a sweep and build its plan. Pure: nothing is written
    and ``workflow`` is not changed; a bad argument raises before anything happens."""
    check_verbose(verbose)
    _check_call(on_error, resume, working_dir, jobs, overrides)
    spec = build_spec(
        base_cfg=workflow.eval_task_cfg,
        overrides=list(overrides or []),
        workflow_overrides=workflow_overrides,
        raw_string_keys=raw_string_keys,
    )
    if signature:  # the task's own parameters: names, types, required values
        _check_signature(workflow, spec, signature)
    sweep_dir, hydra_ovs = _sweep_dir_of(working_dir, spec)
    _check_hydra_choices(hydra_ovs)
    user_sweeper = any(o.startswith("hydra/sweeper=") for o in hydra_ovs)
    if sweeper is not None and sweeper not in _available_sweepers():
        raise ValueError(
            f"sweeper={sweeper!r} is not a sweeper this environment has; "
            f"{unknown_name_hint(sweeper, _available_sweepers())}choose one of "
            f"{', '.join(map(repr, _available_sweepers()))}"
        )
    if resume and (sweeper not in (None, "mushin_nb") or user_sweeper):
        raise ValueError("resume=True works with the default sweeper only; drop sweeper=...")
    chosen, jobs_ovs = _launcher_and_overrides(launcher, jobs, launcher_settings, hydra_ovs)
    if resume and (sweep_dir is None or not (sweep_dir / _store.META_DIR).is_dir()):
        raise FileNotFoundError(
            f"resume=True: {working_dir!s} holds no mushin_nb sweep to resume (no {_store.META_DIR}/ in it); "
            "check working_dir, or drop resume=True to start a new sweep there."
        )
    if sweep_dir is not None and sweep_dir.is_dir():  # read-only checks: before any lock is taken
        _refuse_links_out(sweep_dir)
        if resume and _store.read_manifest(sweep_dir, damage=[]) is None:
            raise FileNotFoundError(_LOST_MANIFEST.format(sweep_dir=sweep_dir))
    return SweepPlan(
        spec=spec,
        sweep_dir=sweep_dir,
        hydra_overrides=hydra_ovs,
        sweeper=sweeper,
        launcher=chosen.hydra,
        jobs_overrides=jobs_ovs,
        on_error=on_error,
        resume=resume,
        workflow_name=type(workflow).__name__,
        workflow_path=f"{type(workflow).__module__}.{type(workflow).__qualname__}",
        task_hash=task_hash(workflow.task, workflow.pre_task),
        run_id=new_run_id(),
        task=task,
        pre_task=pre_task,
        launch_kwargs=dict(launch_kwargs),
        cfg=workflow.eval_task_cfg,
        verbose=verbose,
    )


def _unique_sweep_dir(root: Path) -> Path:
    now = _dt.datetime.now()
    base = root / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    cand, k = base, 0
    while True:
        try:
            cand.mkdir(parents=True, exist_ok=False)
            return cand
        except FileExistsError:
            k += 1
            cand = base.with_name(f"{base.name}-{k}")


def _hydra_overrides(plan: SweepPlan, sweep_dir: Path) -> list[str]:
    """The Hydra overrides of the launch. Internal values (the directory, the run id)
    are rendered as quoted strings, never left to Hydra's grammar to read."""
    ovs = list(plan.hydra_overrides)
    out: list[str] = list(ovs)
    out.append(f"hydra.sweep.dir={render_value(str(sweep_dir))}")
    if not any(o.partition("=")[0].lstrip("+") == "hydra.job.chdir" for o in ovs):
        out.append("hydra.job.chdir=True")
    # quiet cells (the progress bar and the live view say what runs), unless verbose=True
    job_logging = plan.launch_kwargs.get("with_log_configuration", True)
    out.extend(logging_overrides(plan.verbose, ovs, job_logging=job_logging))
    if plan.sweeper is not None:
        out.append(f"hydra/sweeper={plan.sweeper}")
    elif not any(o.startswith("hydra/sweeper=") for o in ovs):
        out.append("hydra/sweeper=mushin_nb")  # finds its live state by hydra.sweep.dir
    if not any(o.partition("=")[0].lstrip("+") == "hydra/launcher" for o in ovs):
        out.append(f"hydra/launcher={plan.launcher}")
    out.extend(plan.jobs_overrides)
    out.extend(plan.spec.task_overrides())
    return out


def _reusable(
    plan: SweepPlan, sweep_dir: Path, old: Mapping[str, Any], *, force: bool, damage: list[_store.Damage]
) -> tuple[list[JobResult], int]:
    """The done results in ``sweep_dir`` that belong to cells of the plan's grid, and
    the first free job number."""
    from ._reload import manifest_results

    records = _store.read_records(sweep_dir, run_ids=old.get("runs"), damage=damage)
    done = [r for r in manifest_results(old, records, plan.spec, damage=damage) if r.status == "done"]
    _store.warn_damage(sweep_dir, damage, stacklevel=5)
    stale = [r for r in done if r.task_hash and r.task_hash != plan.task_hash]
    if stale and not force:
        raise ValueError(
            f"The task of {plan.workflow_name} changed since {len(stale)} of the results in "
            f"{sweep_dir} were computed, so resuming would mix results of two versions of the "
            "code. Pass resume='force' to reuse them anyway, or resume=False (or another "
            "working_dir) to compute every cell again."
        )
    return done, 1 + max((r.job_num for r in records), default=-1)


def _claim_dir(plan: SweepPlan) -> tuple[Path, Any, Callable[[], None]]:
    """Create (if needed) and lock the sweep directory. Returns the directory, the lock
    and an undo that removes what this call created (for a refusal after it)."""
    from ._lock import SweepLock

    if plan.sweep_dir is None:
        sweep_dir = _unique_sweep_dir(Path("multirun").absolute())
        created = [sweep_dir]
    else:
        sweep_dir = plan.sweep_dir
        created = []
        p = sweep_dir
        while not p.exists():
            created.append(p)
            p = p.parent
        sweep_dir.mkdir(parents=True, exist_ok=True)
    meta_existed = (sweep_dir / _store.META_DIR).exists()

    def undo() -> None:
        if not meta_existed:
            try:
                (sweep_dir / _store.META_DIR).rmdir()
            except OSError:
                pass
        for d in created:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break

    lock = SweepLock(sweep_dir)
    try:
        lock.acquire()
    except BaseException:
        undo()
        raise
    return sweep_dir, lock, undo


@refusal  # another sweep running, a locked directory, a refused resume: the message only
def start_sweep(plan: SweepPlan, *, bind: Callable[[SweepRun], None] | None = None) -> SweepRun:
    """Run a planned sweep in a background thread and return its :class:`SweepRun`.

    Claims this kernel's sweep slot (Hydra holds process-wide state while it runs),
    then the sweep directory's lock (one writer per directory, across processes and
    machines); checks a resume against what is on disk; only then archives an
    earlier index, writes the manifest and starts. ``bind(run)`` is called once
    everything is claimed and checked, just before the sweep starts (the workflow
    facade resets itself there). Any refusal leaves disk and objects unchanged.
    """
    from ._execution import claim_sweep_slot, release_sweep_slot

    claim_sweep_slot()
    lock = None
    undo: Callable[[], None] = lambda: None  # noqa: E731
    try:
        sweep_dir, lock, undo = _claim_dir(plan)
        damage: list[_store.Damage] = []  # reported once, by a resume (a new run replaces it all)
        old = _store.read_manifest(sweep_dir, damage=damage)
        previous: list[JobResult] = []
        start_num = 0
        runs = [plan.run_id]
        run_specs = {plan.run_id: plan.spec.to_json()}
        if old is not None and plan.resume:
            previous, start_num = _reusable(plan, sweep_dir, old, force=plan.resume == "force", damage=damage)
            runs = list(old.get("runs", [])) + runs
            run_specs = {**old.get("run_specs", {}), **run_specs}
        elif old is None and plan.resume:
            raise FileNotFoundError(_LOST_MANIFEST.format(sweep_dir=sweep_dir))
        sweep = SweepRun(
            spec=plan.spec,
            sweep_dir=sweep_dir,
            run_id=plan.run_id,
            on_error=plan.on_error,
            workflow_name=plan.workflow_name,
            previous=previous,
            start_num=start_num,
        )
        runner = _runner(plan, sweep_dir)
        launch_overrides = _hydra_overrides(plan, sweep_dir)
    except BaseException:
        if lock is not None:
            lock.release()
        undo()
        release_sweep_slot()
        raise

    # ---- from here on, the sweep is ours: write
    try:
        if not plan.resume:  # also when the old manifest is lost: its index lines must not mix in
            n = _store.archive_index(sweep_dir)
            if n:
                warnings.warn(
                    f"{sweep_dir} already held a sweep ({n} job records); this run replaces it. "
                    "Pass resume=True to keep and reuse those results instead.",
                    RuntimeWarning,
                    stacklevel=4,
                )
        _store.clear_cancel(sweep_dir)
        manifest = {
            "format": 1,
            "workflow": plan.workflow_path,
            "task_hash": plan.task_hash,
            "runs": runs,
            "spec": plan.spec.to_json(),
            "run_specs": run_specs,  # each run's grid: its records' indices refer to it
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        _store.write_manifest(sweep_dir, manifest)
        sweep.manifest = manifest
        if previous:
            print(
                f"mushin_nb: resume: {len(previous)} of {plan.spec.size} cells already done in "
                f"{sweep_dir}; running the other {plan.spec.size - len(previous)}.",
                file=sys.stderr,
            )
        sweep.on_finish_first(lambda _run: lock.release())
        lock.on_lost = lambda reason: _lost_lock(sweep, reason)
        if bind is not None:
            bind(sweep)
    except BaseException:
        lock.release()
        release_sweep_slot()
        raise
    sweep.begin(_launcher_fn(plan, runner, launch_overrides), slot_claimed=True)
    return sweep


_LOST_MANIFEST = (
    "resume=True: the manifest of the sweep in {sweep_dir} and its per-run copies are lost, so new "
    "jobs cannot be placed beside the old ones safely. Its results can still be read (load_from_dir "
    "rebuilds the grid from the job directories); start a new sweep in another working_dir to "
    "compute the rest."
)


def _refuse_links_out(sweep_dir: Path) -> None:
    """A job directory that is a symbolic link out of the sweep directory would make
    Hydra and the job write outside it: refuse, naming the links, before anything runs."""
    root = os.path.realpath(sweep_dir)
    out = []
    with os.scandir(sweep_dir) as it:
        for e in it:
            if e.is_symlink() and not os.path.realpath(e.path).startswith(root + os.sep):
                out.append(e.name)
    if out:
        raise ValueError(
            f"working_dir={str(sweep_dir)!r} holds symbolic links that lead outside it "
            f"({', '.join(sorted(out))}); a job there would write outside the sweep directory. "
            "Remove them, or choose another working_dir."
        )


def _lost_lock(sweep: SweepRun, reason: str) -> None:
    """Another process took this sweep's directory lock (our heartbeat stalled past its
    stale limit): stop starting jobs rather than write beside another writer."""
    warnings.warn(
        f"mushin_nb: the lock of {sweep.sweep_dir} was lost ({reason}); cancelling this sweep so two "
        "writers never share the directory. Finished results are kept.",
        RuntimeWarning,
        stacklevel=2,
    )
    sweep.cancel()


def _runner(plan: SweepPlan, sweep_dir: Path) -> JobRunner:
    from ._reload import upstream_parameter_names
    from ._sweep import reserved_metric_names

    return JobRunner(
        task=plan.task,
        pre_task=plan.pre_task,
        sweep_dir=str(sweep_dir),
        run_id=plan.run_id,
        lookup=plan.spec.lookup(),
        params=[(p.name, list(p.values)) for p in plan.spec.swept],
        on_error=plan.on_error,
        workflow=plan.workflow_name,
        task_hash=plan.task_hash,
        reserved=reserved_metric_names(plan.spec, extra=upstream_parameter_names(plan.spec)),
    )


def _launcher_fn(plan: SweepPlan, runner: JobRunner, launch_overrides: list[str]) -> Callable[[], Any]:
    from hydra_zen import launch

    import hydra_plugins.mushin_nb_plugins.launcher  # noqa: F401  (registers hydra/launcher=mushin_nb)
    import hydra_plugins.mushin_nb_plugins.sweeper  # noqa: F401  (registers hydra/sweeper=mushin_nb)

    kw = dict(plan.launch_kwargs)
    cfg = plan.cfg

    def do_launch() -> Any:
        restore = guard_global_hydra()
        try:  # Hydra's loggers quiet (or verbose) for the launch; the root logger put back after it
            with launch_logging(plan.verbose, plan.hydra_overrides):
                return launch(cfg, runner, overrides=launch_overrides, multirun=True, **kw)
        finally:
            restore()

    return do_launch


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def guard_global_hydra() -> Callable[[], None]:
    """Set aside a ``hydra.initialize()`` context left open (e.g. by an earlier
    notebook cell) and return a function that restores it."""
    from hydra.core.global_hydra import GlobalHydra

    gh = GlobalHydra.instance()
    if not gh.is_initialized():
        return lambda: None
    saved = gh.hydra
    gh.clear()

    def restore() -> None:
        GlobalHydra.instance().initialize(saved)  # type: ignore[arg-type]

    return restore
