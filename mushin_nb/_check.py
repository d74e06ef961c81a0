"""``mushin-nb check DIR [--repair]``: a sweep directory's health, and its repair.

:func:`inspect_sweep_dir` reads a sweep directory as a reload does, and more
thoroughly: every job's result file is checked against the index, temporary files
of interrupted writes are listed, and a lock file's holder is shown.
:func:`repair_sweep_dir` rebuilds what can be rebuilt: the manifest (from the per-run
copies), result files (from their index lines), the index (from the job
directories' result files, atomically), and removes stale temporary files. What is
lost (a missing ``.npz``) is said, with the fix: ``resume=True`` re-runs those cells.

Examples
--------
>>> d = _example_sweep_dir()
>>> (d / ".mushin" / "manifest.json").unlink()
>>> inspect_sweep_dir(d).manifest_state
'rebuilt'
>>> repair_sweep_dir(d)
['rebuilt .mushin/manifest.json from the per-run copies in .mushin/runs/']
>>> inspect_sweep_dir(d).healthy
True
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _store
from ._store import Damage, JobResult, TempFile

# temporary files of mushin-nb before 0.x (tempfile.mkstemp names: no writer in them)
_LEGACY_TEMP = re.compile(
    r"^\.(?:(?:mushin_result\.json|manifest\.json|CANCEL|mushin_running\.json)\.[a-z0-9_]{8}\.tmp"
    r"|result\.[a-z0-9_]{8}\.npz)$"
)


class NotASweepDir(ValueError):
    """The path given is not a mushin-nb sweep directory (a user mistake).

    Examples
    --------
    >>> import tempfile
    >>> inspect_sweep_dir(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    mushin_nb._check.NotASweepDir: DIR '...' is not a mushin-nb sweep directory: it has no .mushin/. Give the working_dir= of a run.
    """


class SweepBusy(RuntimeError):
    """A live sweep holds the directory's lock: --repair waits for it to end.

    Examples
    --------
    >>> from mushin_nb._lock import SweepLock
    >>> d = _example_sweep_dir()
    >>> with SweepLock(d):
    ...     repair_sweep_dir(d)
    Traceback (most recent call last):
    ...
    mushin_nb._check.SweepBusy: DIR '...' is being written by a sweep (lock held by pid ...). Nothing was changed: ...
    """


@dataclass
class Health:
    """What :func:`inspect_sweep_dir` found.

    ``manifest_state`` is ``"ok"``, ``"rebuilt"`` (from the per-run copies) or
    ``"lost"``; ``cells`` counts the cells ``done``, ``failed``, ``cancelled``,
    ``damaged`` and ``missing`` of ``total``; ``damage`` names each damaged file;
    ``temps`` are the temporary files of writes; ``lock`` is the lock's holder.
    The fields after ``lock`` tell :func:`repair_sweep_dir` what to rebuild.

    Examples
    --------
    >>> h = inspect_sweep_dir(_example_sweep_dir())
    >>> h.grid, h.cells
    ('x(2)', {'done': 1, 'failed': 0, 'cancelled': 0, 'damaged': 0, 'missing': 1, 'total': 2})
    >>> h.healthy, h.stale_temps, h.lock
    (True, [], None)
    """

    sweep_dir: Path
    manifest: dict[str, Any] | None = None
    manifest_state: str = "ok"  # ok | rebuilt | lost
    cells: dict[str, int] = field(default_factory=dict)
    grid: str = ""
    index_lines: int = 0
    damage: list[Damage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    temps: list[TempFile] = field(default_factory=list)
    legacy_temps: list[Path] = field(default_factory=list)
    lock: dict[str, Any] | None = None  # the lock holder (see _lock.read_holder)
    # for the repair
    json_from_index: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    unplaced: list[Path] = field(default_factory=list)
    missing_copies: list[str] = field(default_factory=list)
    index_stale: bool = False

    @property
    def stale_temps(self) -> list[TempFile]:
        """The temporary files whose writer is gone (``--repair`` removes them)."""
        return [t for t in self.temps if t.writer == "dead"]

    @property
    def healthy(self) -> bool:
        """True when nothing is damaged and no stale temporary file is left."""
        return not self.damage and not self.stale_temps


def _example_sweep_dir() -> Path:
    """A sweep directory over ``x`` in ``[1, 2]`` whose first job is done (for the examples)."""
    import tempfile

    from ._sweep import Param, SweepSpec

    d = Path(tempfile.mkdtemp())
    spec = SweepSpec([Param("x", [1, 2], ["1", "2"], swept=True)]).to_json()
    _store.write_manifest(d, {"runs": ["r1"], "spec": spec, "run_specs": {"r1": spec}, "workflow": "W"})
    done = JobResult(index=(0,), status="done", subdir="0", job_num=0, run_id="r1", metrics={"y": 1.0})
    _store.write_job_result(d, d / "0", done)
    return d


def _rel(p: Path, base: Path) -> str:
    try:
        return str(Path(p).relative_to(base))
    except ValueError:
        return str(p)


def _check_dir(sweep_dir: Path | str) -> Path:
    p = Path(sweep_dir).expanduser()
    if not p.exists():
        raise NotASweepDir(
            f"DIR {str(sweep_dir)!r} does not exist; give a sweep directory (the working_dir= of a run)."
        )
    if not p.is_dir():
        raise NotASweepDir(
            f"DIR {str(sweep_dir)!r} is a file, not a sweep directory (the working_dir= of a run)."
        )
    p = p.resolve()
    if not (p / _store.META_DIR).is_dir():
        hydra = (
            " (a plain Hydra sweep: it has no mushin-nb files to check)"
            if (p / "multirun.yaml").exists()
            else ""
        )
        raise NotASweepDir(
            f"DIR {str(sweep_dir)!r} is not a mushin-nb sweep directory: it has no {_store.META_DIR}/{hydra}. "
            "Give the working_dir= of a run."
        )
    return p


def _lock_holder(sweep: Path) -> dict[str, Any] | None:
    """Who holds the sweep directory's lock (never taking it), with the lock file's
    text under ``"content"``; None if nobody does."""
    from ._lock import lock_path, read_holder

    holder = read_holder(sweep)
    if holder is not None:
        try:
            fd = _store.open_nofollow(lock_path(sweep))
            with os.fdopen(fd, "rb") as f:
                holder["content"] = f.read(2000).decode("utf-8", "replace").strip()
        except OSError as e:
            holder["content"] = f"(cannot be read: {e.strerror})"
    return holder


def _describe_lock(holder: dict[str, Any]) -> str:
    if holder.get("unreadable"):
        who = f"an unreadable lock file (modified {holder.get('modified')}): {holder.get('content', '')!r}"
    else:
        who = f"held by pid {holder.get('pid')} on host {holder.get('host')}"
        if holder.get("user"):
            who += f", user {holder['user']}"
        who += f", since {holder.get('since', '?')}, last heartbeat {holder.get('heartbeat', '?')}"
    if holder.get("stale"):
        return (
            f"{who}; stale ({holder.get('stale_reason')}): the next sweep takes it over, --repair removes it"
        )
    return f"{who}; live: a sweep is writing this directory"


def _cell_counts(results: list[JobResult], size: int) -> dict[str, int]:
    by_cell: dict[tuple[int, ...], JobResult] = {}
    for r in sorted(results, key=lambda r: r.job_num):
        prev = by_cell.get(r.index)
        if prev is None or prev.status != "done":
            by_cell[r.index] = r
    counts = {"done": 0, "failed": 0, "cancelled": 0, "damaged": 0}
    for r in by_cell.values():
        key = "damaged" if _store.is_damaged(r) else r.status
        counts[key] = counts.get(key, 0) + 1
    counts["missing"] = max(size - len(by_cell), 0)
    counts["total"] = size
    return counts


def inspect_sweep_dir(sweep_dir: Path | str) -> Health:
    """The health of a sweep directory (raises :class:`NotASweepDir` if it is none).

    It is read as a reload reads it (the manifest, the index, the job directories),
    and more thoroughly: each indexed job's own result file, the per-run copies of
    the manifest, temporary files of interrupted writes and the lock's holder.
    Nothing is changed.

    Examples
    --------
    >>> d = _example_sweep_dir()
    >>> h = inspect_sweep_dir(d)
    >>> h.healthy, h.manifest_state, h.cells["done"], h.cells["missing"], h.index_lines
    (True, 'ok', 1, 1, 1)
    >>> (d / "0" / "mushin_result.json").unlink()
    >>> h = inspect_sweep_dir(d)
    >>> h.healthy, [x.problem for x in h.damage]
    (False, ['is missing'])
    """
    from ._reload import manifest_results
    from ._sweep import SweepSpec

    sweep = _check_dir(sweep_dir)
    h = Health(sweep_dir=sweep)
    damage: list[Damage] = []
    manifest = _inspect_manifest(h, damage)
    # the results, as a reload reads them
    run_ids = manifest.get("runs") if manifest is not None else None
    records = _store.read_records(sweep, run_ids=run_ids, damage=damage)
    h.unplaced = [Path(d.path) for d in damage if d.marker is not None and not d.marker.index]
    if manifest is not None:
        spec = SweepSpec.from_json(manifest["spec"])
        results = manifest_results(manifest, records, spec, damage=damage)
        h.cells = _cell_counts(results, spec.size)
        h.grid = " x ".join(f"{p.name}({len(p.values)})" for p in spec.swept) or "one cell"
    latest = _inspect_result_files(h, damage)
    try:
        unindexed = _store.unindexed_dirs(sweep, latest)
    except OSError:
        unindexed = []
    n_unindexed = sum(1 for name in unindexed for _ in _store.job_dirs_below(sweep, name))
    n_unindexed -= len(h.unplaced)
    if n_unindexed > 0:
        h.index_stale = True
        h.notes.append(
            f"{n_unindexed} job director{'y is' if n_unindexed == 1 else 'ies are'} not in the index (a job "
            "stopped between its result file and its index line): read by scanning; --repair adds them"
        )
    _inspect_temps(h, latest, unindexed)
    h.lock = _lock_holder(sweep)
    h.damage = damage
    return h


def _inspect_manifest(h: Health, damage: list[Damage]) -> dict[str, Any] | None:
    """Read the manifest and check its per-run copies (into ``h`` and ``damage``)."""
    meta = h.sweep_dir / _store.META_DIR
    manifest = _store.read_manifest(h.sweep_dir, damage=damage)
    h.manifest = manifest
    if any(d.fatal for d in damage):
        h.manifest_state = "lost"
    elif manifest is None:
        h.manifest_state = "lost"
        damage.append(
            Damage(
                meta / _store.MANIFEST,
                "is missing",
                fix="it cannot be rebuilt (no per-run copies in .mushin/runs/), so the results cannot be "
                "placed on the grid; run the sweep again with resume=False",
                fatal=True,
            )
        )
    elif damage:
        h.manifest_state = "rebuilt"
    else:
        for run_id in manifest.get("runs", []):
            p = meta / _store.RUNS_DIR / f"{run_id}.json"
            c, problem = _store.read_json(p)
            if problem == "is missing":
                h.missing_copies.append(run_id)
                continue
            if problem is None:
                problem = _store.run_copy_problem(c, run_id)
            if problem is not None:
                h.missing_copies.append(run_id)
                damage.append(
                    Damage(p, problem, fix="--repair writes it again from the manifest", repairable=True)
                )
        if h.missing_copies:
            h.notes.append(
                f"{len(h.missing_copies)} run(s) have no per-run copy in .mushin/runs/ (written by an older "
                "mushin-nb): the manifest could not be rebuilt if it were damaged; --repair writes them"
            )
    return manifest


def _inspect_result_files(h: Health, damage: list[Damage]) -> dict[str, dict[str, Any]]:
    """Check each indexed job's own result file (a reload does not read it: the index
    line holds it). Returns the latest index record of each job directory."""
    sweep = h.sweep_dir
    raw, _bad, _ = _store.read_index(sweep)
    h.index_lines = len(raw) + len(_bad)
    h.index_stale = bool(_bad)
    latest: dict[str, dict[str, Any]] = {}
    for rec in raw:
        latest[rec["subdir"]] = rec
    for sub, rec in latest.items():
        job_dir = sweep / sub
        p = job_dir / _store.RESULT_JSON
        own, problem = _store.read_json(p)
        if problem is None:
            problem = _store.record_problem(own)
        if problem is None:
            continue
        if not job_dir.is_dir():
            h.notes.append(f"the job directory {sub} is missing; its index line holds its result")
            continue
        h.json_from_index.append((p, rec))
        damage.append(
            Damage(
                p,
                problem,
                fix="its index line holds the record: --repair rewrites the file from it",
                repairable=True,
            )
        )
    return latest


def _inspect_temps(h: Health, latest: dict[str, dict[str, Any]], unindexed: list[str]) -> None:
    """Find the temporary files of writes in the directories a sweep writes to."""
    sweep = h.sweep_dir
    meta = sweep / _store.META_DIR
    dirs = [sweep, meta, meta / _store.RUNS_DIR]
    dirs += [sweep / name for name in sorted(set(unindexed) | {s.split("/", 1)[0] for s in latest})]
    dirs += [sweep / s for s in latest if "/" in s]
    seen: set[Path] = set()
    for d in dirs:
        if d in seen or not d.is_dir() or d.is_symlink():
            continue
        seen.add(d)
        h.temps += _store.temp_files(d)
        try:
            with os.scandir(d) as it:
                h.legacy_temps += [d / e.name for e in it if _LEGACY_TEMP.match(e.name)]
        except OSError:
            pass
    for t in h.temps:
        if t.writer == "unknown":
            h.notes.append(
                f"{_rel(t.path, sweep)}: a temporary file written on another host (pid {t.pid}); left alone"
            )
    for p in h.legacy_temps:
        h.notes.append(
            f"{_rel(p, sweep)}: a temporary file of an older mushin-nb (its writer is unknown); "
            "remove it by hand if no sweep is writing to this directory"
        )


def format_health(h: Health) -> str:
    """What ``mushin-nb check`` prints for ``h``: the sweep, its cells, each damaged
    file with whether ``--repair`` rebuilds it, stale temporary files, the lock, and
    the result with the fix.

    Examples
    --------
    >>> print(format_health(inspect_sweep_dir(_example_sweep_dir())))
    mushin-nb check ...
      sweep: W; 1 run(s); grid x(2)
      manifest: ok
      cells: 2: 1 done, 0 failed, 0 cancelled, 0 damaged, 1 missing
      index: 1 line(s)
      result: healthy
    """
    sweep = h.sweep_dir
    out = [f"mushin-nb check {sweep}"]
    m = h.manifest
    if m is not None:
        runs = m.get("runs", [])
        out.append(f"  sweep: {m.get('workflow', '?')}; {len(runs)} run(s); grid {h.grid}")
    out.append(f"  manifest: {h.manifest_state}")
    if h.cells:
        c = h.cells
        out.append(
            f"  cells: {c['total']}: {c['done']} done, {c['failed']} failed, {c['cancelled']} cancelled, "
            f"{c['damaged']} damaged, {c['missing']} missing"
        )
    out.append(f"  index: {h.index_lines} line(s)")
    if h.damage:
        out.append(f"  damaged ({len(h.damage)}):")
        for d in h.damage:
            tag = "--repair rebuilds it" if d.repairable else "cannot be repaired"
            out.append(f"    - {d.describe(sweep)} [{tag}]")
    stale = h.stale_temps
    if stale:
        out.append(f"  stale temporary files ({len(stale)}):")
        for t in stale:
            out.append(
                f"    - {_rel(t.path, sweep)} (its writer, pid {t.pid}, is gone) [--repair removes it]"
            )
    if h.lock is not None:
        out.append(f"  lock: {_describe_lock(h.lock)}")
    for note in h.notes:
        out.append(f"  note: {note}")
    if h.healthy:
        out.append("  result: healthy")
    else:
        n = len(h.damage) + len(stale)
        fix = []
        if any(d.repairable for d in h.damage) or stale or h.json_from_index or h.unplaced:
            fix.append(f"`mushin-nb check --repair {sweep}` rebuilds what can be rebuilt")
        if h.manifest_state == "lost":
            fix.append("run the sweep again with resume=False (its grid is lost)")
        elif any(d.marker is not None or not d.repairable for d in h.damage):
            fix.append("run the sweep again with resume=True to re-run the damaged or missing cells")
        out.append(f"  result: DAMAGED ({n} problem{'s' if n != 1 else ''}): " + "; ".join(fix))
    return "\n".join(out)


def _move_aside(p: Path) -> Path:
    k = 0
    while True:
        dest = p.with_name(p.name + (".damaged" if k == 0 else f".damaged{k}"))
        if not os.path.lexists(dest):
            os.replace(p, dest)
            return dest
        k += 1


def repair_sweep_dir(sweep_dir: Path | str, *, break_lock: bool = False) -> list[str]:
    """Rebuild what can be rebuilt in a sweep directory; returns what was done.
    Raises :class:`SweepBusy` (changing nothing) while a live sweep holds its lock,
    unless ``break_lock`` (the user is sure its holder is dead): then the lock is removed.

    Examples
    --------
    >>> d = _example_sweep_dir()
    >>> (d / "0" / "mushin_result.json").unlink()
    >>> repair_sweep_dir(d)
    ['rewrote 0/mushin_result.json from its index line']
    >>> repair_sweep_dir(d)
    []
    """
    from . import _lock

    h = inspect_sweep_dir(sweep_dir)
    sweep = h.sweep_dir
    meta = sweep / _store.META_DIR
    done: list[str] = []
    if h.lock is not None and not h.lock.get("stale") and not break_lock:
        raise SweepBusy(
            f"DIR {str(sweep_dir)!r} is being written by a sweep (lock {_describe_lock(h.lock)}). "
            "Nothing was changed: run --repair after that sweep ends (or cancel it); if you are sure "
            "its process is dead (e.g. its node was rebooted), add --break-lock."
        )
    if h.lock is not None:
        gone = _lock.break_lock(sweep, force=break_lock)
        if gone is not None:
            why = gone.get("stale_reason") or "--break-lock"
            done.append(
                f"removed the lock of pid {gone.get('pid', '?')} on host {gone.get('host', '?')} ({why})"
            )
    m = h.manifest
    if m is not None and h.manifest_state == "rebuilt":
        _store.write_manifest(sweep, m)
        done.append(
            f"rebuilt {_store.META_DIR}/{_store.MANIFEST} from the per-run copies in {_store.META_DIR}/runs/"
        )
    if m is not None and h.missing_copies:
        for run_id in h.missing_copies:
            p = meta / _store.RUNS_DIR / f"{run_id}.json"
            if os.path.lexists(p):
                _move_aside(p)
        written = _store.write_run_copies(sweep, m)
        if written:
            done.append(f"wrote the per-run copies of {len(written)} run(s) in {_store.META_DIR}/runs/")
    for p, rec in h.json_from_index:
        _store.atomic_write_text(p, _store.dumps(rec))
        done.append(f"rewrote {_rel(p, sweep)} from its index line")
    for p in h.unplaced:
        dest = _move_aside(p)
        done.append(
            f"moved {_rel(p, sweep)} aside to {dest.name}: that job's cell is unknown and has no result "
            "(resume=True re-runs it)"
        )
    if h.index_stale:
        n = _rebuild_index(sweep, h.manifest)
        done.append(
            f"rebuilt {_store.META_DIR}/{_store.INDEX} from {n} job result file(s) "
            f"(the previous one is kept as {_store.META_DIR}/index.damaged.jsonl)"
        )
    for t in h.stale_temps:
        if _store.unlink_quiet(t.path):
            done.append(f"removed {_rel(t.path, sweep)} (a temporary file of pid {t.pid}, which is gone)")
    return done


def _rebuild_index(sweep: Path, manifest: dict[str, Any] | None) -> int:
    """Write the index anew from the job directories' result files (the index line
    where a result file is unreadable), atomically; the old one is kept."""
    meta = sweep / _store.META_DIR
    raw, _bad, _ = _store.read_index(sweep)
    by_sub: dict[str, dict[str, Any]] = {}
    for rec in raw:
        own, problem = _store.read_json(sweep / rec["subdir"] / _store.RESULT_JSON)
        if problem is None and _store.record_problem(own) is None:
            own["subdir"] = rec["subdir"]
            rec = own
        by_sub[rec["subdir"]] = rec
    for name in _store.unindexed_dirs(sweep, by_sub):
        for sub in _store.job_dirs_below(sweep, name):
            own, problem = _store.read_json(sweep / sub / _store.RESULT_JSON)
            if problem is None and _store.record_problem(own) is None:
                own["subdir"] = sub
                by_sub[sub] = own
    keep = set(manifest.get("runs", [])) if manifest is not None else None
    recs = [r for r in by_sub.values() if keep is None or r.get("run_id", "") in keep]
    recs.sort(key=lambda r: (float(r.get("finished") or 0.0), int(r.get("job_num", -1))))
    index = meta / _store.INDEX
    if index.exists() and not index.is_symlink():
        _store.atomic_write_bytes(meta / "index.damaged.jsonl", index.read_bytes())
    _store.atomic_write_text(index, "".join(_store.dumps(r) + "\n" for r in recs))
    return len(recs)


def main(sweep_dir: str, *, repair: bool = False, break_lock: bool = False) -> int:
    """The ``check`` command: print the health (after the repair with ``repair``);
    0 if healthy, 1 if damaged, 2 if ``sweep_dir`` is not a sweep directory.

    Examples
    --------
    >>> d = _example_sweep_dir()
    >>> main(str(d))
    mushin-nb check ...
      result: healthy
    0
    >>> main(str(d / "0"))
    2
    """
    import sys

    try:
        if repair:
            done = repair_sweep_dir(sweep_dir, break_lock=break_lock)
            for line in done:
                print(f"repaired: {line}")
            if not done:
                print("repaired: nothing (nothing that can be rebuilt is damaged)")
        h = inspect_sweep_dir(sweep_dir)
    except NotASweepDir as e:
        print(f"mushin-nb check: {e}", file=sys.stderr)
        return 2
    except SweepBusy as e:
        print(f"mushin-nb check --repair: {e}", file=sys.stderr)
        return 1
    print(format_health(h))
    if repair and not h.healthy:
        print("  could not repair:")
        for d in h.damage:
            print(f"    - {d.describe(h.sweep_dir)}")
    return 0 if h.healthy else 1
