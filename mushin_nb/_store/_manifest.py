"""The sweep's manifest (``.mushin/manifest.json``) and its per-run copies.

The manifest says what the sweep is: its parameters and their values in order (the
grid, ``spec``), the runs whose results make it up (``runs``) and each run's grid
(``run_specs``). Each run also writes an immutable copy of its own part
(``.mushin/runs/<run id>.json``), from which a missing or damaged manifest is rebuilt.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> spec = {"params": [{"name": "x", "values": [1, 2]}]}
>>> write_manifest(d, {"runs": ["r1"], "spec": spec, "run_specs": {"r1": spec}})
>>> (d / ".mushin" / "manifest.json").unlink()
>>> found: list = []
>>> read_manifest(d, damage=found)["runs"], found[0].problem
(['r1'], 'is missing')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._damage import Damage, report_damage
from ._files import atomic_write_text, dumps, read_json, write_once
from ._layout import MANIFEST, META_DIR, RUNS_DIR

__all__ = ["read_manifest", "rebuild_manifest", "run_copy_problem", "write_manifest", "write_run_copies"]


def write_manifest(sweep_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``.mushin/manifest.json`` atomically, after an immutable per-run copy
    (``.mushin/runs/<run id>.json``: that run's grid, workflow, task hash, created,
    and the runs it builds on) for each run of ``manifest["run_specs"]`` that has
    none yet. A missing or damaged manifest is rebuilt from those copies
    (:func:`read_manifest`).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> spec = {"params": [{"name": "x", "values": [1, 2]}]}
    >>> write_manifest(d, {"runs": ["r1"], "spec": spec, "run_specs": {"r1": spec}})
    >>> sorted(p.name for p in (d / ".mushin").rglob("*.json"))
    ['manifest.json', 'r1.json']
    """
    meta = Path(sweep_dir) / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    write_run_copies(sweep_dir, manifest)
    atomic_write_text(meta / MANIFEST, dumps(manifest))


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def write_run_copies(sweep_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Write the per-run copy of each run of ``manifest`` that has none yet (never
    replacing one). Returns the run ids written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> spec = {"params": []}
    >>> m = {"runs": ["r1", "r2"], "spec": spec, "run_specs": {"r1": spec, "r2": spec}}
    >>> write_run_copies(d, m), write_run_copies(d, m)
    (['r1', 'r2'], [])
    """
    import time

    runs = [r for r in (manifest.get("runs") or []) if isinstance(r, str)]
    specs = manifest.get("run_specs") or {}
    runs_dir = Path(sweep_dir) / META_DIR / RUNS_DIR
    todo = [
        (i, r)
        for i, r in enumerate(runs)
        if r in specs and _RUN_ID.fullmatch(r) and not os.path.lexists(runs_dir / f"{r}.json")
    ]
    if not todo:
        return []
    runs_dir.mkdir(parents=True, exist_ok=True)
    with os.scandir(runs_dir) as it:
        seq = sum(1 for e in it if e.name.endswith(".json"))
    now = time.time()
    written = []
    for i, run_id in todo:
        seq += 1
        copy = {
            "format": manifest.get("format", 1),
            "run_id": run_id,
            "workflow": manifest.get("workflow", ""),
            "task_hash": manifest.get("task_hash", ""),
            "spec": specs[run_id],
            "runs": runs[: i + 1],  # the runs whose results make up the sweep with this one
            "created": manifest.get("created", ""),
            "written": now,
            "seq": seq,  # the newest copy (largest seq) rebuilds the manifest
        }
        if write_once(runs_dir / f"{run_id}.json", dumps(copy).encode("utf-8")):
            written.append(run_id)
    return written


def _spec_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), list):
        return "has no valid grid ('spec')"
    for p in spec["params"]:
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("name"), str)
            or not isinstance(p.get("values"), list)
        ):
            return "has a damaged parameter in its grid ('spec')"
    return None


def _manifest_problem(m: Any) -> str | None:
    if not isinstance(m, dict):
        return f"is not a manifest (a JSON {type(m).__name__})"
    bad = _spec_problem(m.get("spec"))
    if bad:
        return bad
    runs = m.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        return "has a damaged list of runs ('runs')"
    specs = m.get("run_specs", {})
    if not isinstance(specs, dict) or any(_spec_problem(s) for s in specs.values()):
        return "has a damaged grid of a run ('run_specs')"
    return None


def run_copy_problem(c: Any, stem: str) -> str | None:
    """What makes ``c`` (a parsed ``.mushin/runs/<stem>.json``) not the per-run copy of
    run ``stem``; None if it is one.

    Examples
    --------
    >>> good = {"run_id": "r1", "spec": {"params": []}, "runs": ["r1"]}
    >>> run_copy_problem(good, "r1") is None
    True
    >>> run_copy_problem(good, "r2")
    "is not the copy of run 'r2'"
    >>> run_copy_problem({**good, "spec": {}}, "r1")
    "has no valid grid ('spec')"
    """
    if not isinstance(c, dict) or c.get("run_id") != stem:
        return "is not the copy of run " + repr(stem)
    bad = _spec_problem(c.get("spec"))
    if bad:
        return bad
    runs = c.get("runs")
    if (
        not isinstance(runs, list)
        or not all(isinstance(r, str) for r in runs)
        or not runs
        or runs[-1] != stem
    ):
        return "has a damaged list of runs ('runs')"
    return None


def rebuild_manifest(sweep_dir: Path) -> tuple[dict[str, Any] | None, list[Damage]]:
    """The manifest as rebuilt from the per-run copies in ``.mushin/runs/`` (None if
    there are none), and what could not be used.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> rebuild_manifest(d)
    (None, [])
    >>> spec = {"params": [{"name": "x", "values": [1]}]}
    >>> write_manifest(d, {"runs": ["r1"], "spec": spec, "run_specs": {"r1": spec}, "workflow": "W"})
    >>> m, notes = rebuild_manifest(d)
    >>> m["runs"], m["workflow"], notes
    (['r1'], 'W', [])
    """
    runs_dir = Path(sweep_dir) / META_DIR / RUNS_DIR
    notes: list[Damage] = []
    try:
        with os.scandir(runs_dir) as it:
            names = sorted(e.name for e in it if e.name.endswith(".json") and not e.name.startswith("."))
    except OSError:
        return None, notes
    copies: dict[str, dict[str, Any]] = {}
    broken: dict[str, str] = {}
    for name in names:
        c, problem = read_json(runs_dir / name)
        if problem is None:
            problem = run_copy_problem(c, name[:-5])
        if problem is None:
            copies[name[:-5]] = c
        else:
            broken[name[:-5]] = problem
    if not copies:
        notes += [Damage(runs_dir / f"{r}.json", p, fix="ignored") for r, p in broken.items()]
        return None, notes
    newest = max(copies.values(), key=lambda c: (c.get("seq") or 0, c.get("written") or 0, len(c["runs"])))
    kept = [r for r in newest["runs"] if r in copies]
    for r in newest["runs"]:
        if r not in copies:
            notes.append(
                Damage(
                    runs_dir / f"{r}.json",
                    broken.pop(r, "is missing"),
                    fix=f"the results of run {r} cannot be placed on the grid and are left out; "
                    "resume=True re-runs their cells",
                )
            )
    notes += [Damage(runs_dir / f"{r}.json", p, fix="ignored") for r, p in broken.items()]
    manifest = {
        "format": newest.get("format", 1),
        "workflow": newest.get("workflow", ""),
        "task_hash": newest.get("task_hash", ""),
        "runs": kept,
        "spec": newest["spec"],
        "run_specs": {r: copies[r]["spec"] for r in kept},
        "created": newest.get("created", ""),
    }
    return manifest, notes


def read_manifest(sweep_dir: Path, *, damage: list[Damage] | None = None) -> dict[str, Any] | None:
    """The sweep's manifest, or None if ``sweep_dir`` holds none.

    A missing or damaged ``manifest.json`` is rebuilt from the per-run copies in
    ``.mushin/runs/`` (see :func:`write_manifest`). What was damaged is added to
    ``damage`` if given, else warned about (one RuntimeWarning). A damaged manifest
    with no copies to rebuild it from gives None and a ``fatal`` :class:`Damage`.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> read_manifest(d) is None  # not a sweep directory
    True
    >>> spec = {"params": [{"name": "x", "values": [1]}]}
    >>> write_manifest(d, {"runs": ["r1"], "spec": spec, "run_specs": {"r1": spec}})
    >>> _ = (d / ".mushin" / "manifest.json").write_text("{")  # damaged
    >>> found: list = []
    >>> read_manifest(d, damage=found)["runs"], found[0].repairable
    (['r1'], True)
    """
    meta = Path(sweep_dir) / META_DIR
    p = meta / MANIFEST
    m, problem = read_json(p)
    if problem is None:
        problem = _manifest_problem(m)
        if problem is None:
            return m
    if problem == "is missing" and not (meta / RUNS_DIR).is_dir():
        return None  # not a mushin_nb sweep directory
    rebuilt, found = rebuild_manifest(sweep_dir)
    if rebuilt is not None:
        found.insert(
            0,
            Damage(
                p,
                problem,
                fix="it was rebuilt from the per-run copies in .mushin/runs/ "
                "(`mushin-nb check --repair` writes it back)",
                repairable=True,
            ),
        )
    elif problem != "is missing":
        found.insert(
            0,
            Damage(
                p,
                problem,
                fix="it cannot be rebuilt (no per-run copies in .mushin/runs/: the sweep was written by "
                "an older mushin-nb), so the results cannot be placed on the grid. Run the sweep again "
                "with resume=False to compute it anew (the old index is kept beside the new one)",
                fatal=True,
            ),
        )
    report_damage(Path(sweep_dir), found, damage)
    return rebuilt
