"""Reading a sweep back: each record mapped to its cell by parameter values,
directories of rai mushin or plain Hydra, and metrics files written by tasks.

The workflow facade (``load_from_dir``, ``to_xarray``) and the engine's resume use
these; none of them needs the code that ran the sweep.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _store
from ._store import JobResult
from ._sweep import SweepSpec, build_spec

__all__ = [
    "manifest_results",
    "remap_results",
    "canonical",
    "job_params",
    "upstream_parameter_names",
    "load_plain_hydra",
    "rebuild_from_job_dirs",
    "default_metric_load_fn",
]


def manifest_results(
    manifest: Mapping[str, Any],
    records: Sequence[JobResult],
    target: SweepSpec,
    damage: list[_store.Damage] | None = None,
) -> list[JobResult]:
    """Records of a sweep directory -> cells of ``target``: each record's index is
    relative to the grid of the run that wrote it (grids grow when a resume adds
    values), so it is mapped by parameter values.

    A damaged cell (a failed record of error type ``DamagedResult``) that another
    job finished since (resume=True re-ran it) is damaged no more: its stand-in is
    dropped, and so is its entry in ``damage`` (as read by ``_store.read_records``);
    the other entries of cells get the job's parameters."""
    specs = manifest.get("run_specs", {})
    by_run: dict[str, list[JobResult]] = {}
    for r in records:
        if not r.index and not r.run_id and _store.is_damaged(r):
            continue  # a damaged result whose cell is unknown
        by_run.setdefault(r.run_id, []).append(r)
    out: list[JobResult] = []
    for run_id, recs in by_run.items():
        try:
            spec = SweepSpec.from_json(specs.get(run_id, manifest["spec"]))
        except Exception as e:  # a damaged grid: that run's results cannot be placed
            lost = _store.Damage(
                Path(_store.META_DIR) / _store.MANIFEST,
                f"holds a grid of run {run_id} that cannot be read ({type(e).__name__}: {e})",
                fix="that run's results are left out; resume=True re-runs their cells",
            )
            if damage is None:
                warnings.warn(f"mushin_nb: {lost.describe()}", RuntimeWarning, stacklevel=2)
            else:
                damage.append(lost)
            continue
        out.extend(remap_results(recs, spec, target))
    done = {r.index for r in out if r.status == "done"}
    out = [r for r in out if not (_store.is_damaged(r) and r.index in done)]
    out.sort(key=lambda r: r.job_num)
    if damage is not None:
        placed = {r.error["message"]: r for r in out if _store.is_damaged(r)}  # type: ignore[index]
        kept = []
        for d in damage:
            if d.marker is not None and d.marker.index:
                r = placed.get((d.marker.error or {}).get("message", ""))
                if r is None:
                    continue  # re-run since, or not a cell of this grid
                d.cell = ", ".join(f"{k}={v!r}" for k, v in target.cell_params(r.index).items())
            kept.append(d)
        damage[:] = kept
    return out


def remap_results(records: Sequence[JobResult], old: SweepSpec, new: SweepSpec) -> list[JobResult]:
    """Results of ``old`` sweep -> the cells of ``new`` with the same parameter
    values (fixed values must match too); others are dropped."""
    from dataclasses import replace

    if old.fixed_values() != new.fixed_values() and canonical(old.fixed_values()) != canonical(
        new.fixed_values()
    ):
        return []
    if [p.name for p in old.swept] != [p.name for p in new.swept]:
        return []
    tables = []
    for po, pn in zip(old.swept, new.swept):
        pos = {canonical(v): i for i, v in enumerate(pn.values)}
        tables.append([pos.get(canonical(v)) for v in po.values])
    if all(t == list(range(len(t))) for t in tables):  # the same grid: each index stays
        sizes = tuple(len(t) for t in tables)
        return [
            r
            for r in records
            if len(r.index) == len(sizes)
            and all(map(int.__lt__, r.index, sizes))
            and min(r.index, default=0) >= 0
        ]
    out = []
    for r in records:
        if len(r.index) != len(tables):
            continue
        idx = tuple(t[i] if i < len(t) else None for t, i in zip(tables, r.index))
        if any(i is None for i in idx):
            continue
        out.append(r if idx == r.index else replace(r, index=idx))  # type: ignore[arg-type]
    return out


def canonical(v: Any) -> str:
    """A text key of a value that tells types apart (``1``, ``1.0``, ``True``, ``"1"``).

    >>> canonical(1) != canonical(1.0) != canonical(True) != canonical("1")
    True
    """
    import json

    def tag(x: Any) -> Any:
        if isinstance(x, bool):
            return ["b", x]
        if isinstance(x, int):
            return ["i", x]
        if isinstance(x, float):
            return ["f", repr(x)]
        if isinstance(x, str):
            return ["s", x]
        if x is None:
            return ["n"]
        if isinstance(x, Mapping):
            return ["d", sorted([str(k), tag(y)] for k, y in x.items())]
        if isinstance(x, (list, tuple)):
            return ["l", [tag(y) for y in x]]
        return ["o", repr(x)]

    return json.dumps(tag(v))


def _safe_torch_load(path: Path) -> Any:
    import numpy as np
    import torch

    allowed: list[Any] = [np.ndarray, np.dtype]
    core: Any = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core to np._core
    allowed += [core.multiarray._reconstruct, core.multiarray.scalar]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, weights_only=True, map_location="cpu")


def default_metric_load_fn(file_path: Path) -> Mapping[str, Any]:
    """Load a metrics file without executing pickled code.

    ``.pt`` / ``.pth``: ``torch.load(weights_only=True)`` with numpy arrays allowed;
    ``.npz``: its arrays; ``.npy``: one array named after the file; ``.json``: its
    object. Any other suffix: a ``ValueError`` saying to override ``metric_load_fn``.
    """
    import json

    import numpy as np

    file_path = Path(file_path)
    suffix = file_path.suffix.lower()
    if suffix in (".pt", ".pth"):
        out = _safe_torch_load(file_path)
    elif suffix == ".npz":
        with np.load(file_path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    elif suffix == ".npy":
        out = {file_path.stem: np.load(file_path, allow_pickle=False)}
    elif suffix == ".json":
        out = json.loads(file_path.read_text(encoding="utf-8"))
    else:
        raise ValueError(
            f"Cannot load metrics from {file_path}: the default loader reads .pt/.pth, .npz, .npy "
            "and .json files. Override `metric_load_fn(file_path)` in your workflow to read this format."
        )
    if not isinstance(out, Mapping):
        raise TypeError(f"The metrics file {file_path} holds a {type(out).__name__}, not a dict of metrics.")
    return out


def job_params(job_dir: Path) -> dict[str, Any]:
    """The parameter values of one job of an earlier sweep (mushin_nb result
    file and manifest; else Hydra's overrides.yaml)."""
    import json

    rec_file = job_dir / _store.RESULT_JSON
    for parent in [job_dir, *job_dir.parents][1:4]:
        manifest = _store.read_manifest(parent)
        if manifest is not None and rec_file.exists():
            rec = json.loads(rec_file.read_text(encoding="utf-8"))
            spec = SweepSpec.from_json(manifest.get("run_specs", {}).get(rec.get("run_id"), manifest["spec"]))
            params = {}
            it = iter(rec["index"])
            for p in spec.params:
                params[p.name] = p.values[next(it)] if p.swept else p.value
            return params
    from hydra_zen import load_from_yaml

    from ._overrides import override_name, parse_overrides, unquote

    ov = load_from_yaml(job_dir / ".hydra" / "overrides.yaml")
    out = {}
    for o in parse_overrides([str(x) for x in ov]):
        out[override_name(o)] = unquote(o.value())
    return out


def load_plain_hydra(
    wd: Path, damage: list[_store.Damage] | None = None
) -> tuple[SweepSpec, list[JobResult]]:
    """A sweep directory written by rai mushin or plain Hydra: parameters from
    multirun.yaml, each job's cell from its overrides.yaml. A job directory whose
    ``.hydra`` files cannot be read (a write a kill cut short) costs only that job:
    it is added to ``damage`` (or warned about) and left out."""
    from hydra_zen import load_from_yaml

    from ._sweep import parse_job_overrides

    mr = wd / "multirun.yaml"
    if not mr.exists():
        raise FileNotFoundError(
            f"{wd} is not a sweep directory: it has neither .mushin/manifest.json nor multirun.yaml"
        )
    cfg = load_from_yaml(mr)
    task_ovs = [str(o) for o in cfg.hydra.overrides.task]
    spec = build_spec(base_cfg=None, overrides=task_ovs, workflow_overrides={})
    lookup = spec.lookup()
    results = []
    for hydra_dir in wd.glob(f"**/{cfg.hydra.output_subdir or '.hydra'}"):
        d = hydra_dir.parent
        if d == wd:
            continue
        try:
            job_num = int(load_from_yaml(hydra_dir / "hydra.yaml").hydra.job.num)
            ovs = [str(o) for o in load_from_yaml(hydra_dir / "overrides.yaml")]
            idx = parse_job_overrides(ovs, lookup)
        except Exception as e:  # torn or garbage YAML: this job's cell is unknown
            found = _store.Damage(
                hydra_dir,
                f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                fix="this job's result is left out; the other jobs are read",
            )
            if damage is None:
                _store.warn_damage(wd, [found], stacklevel=3)
            else:
                damage.append(found)
            continue
        if idx is None:
            continue
        results.append(
            JobResult(index=idx, status="done", subdir=d.relative_to(wd).as_posix(), job_num=job_num)
        )
    results.sort(key=lambda r: r.job_num)
    return spec, results


def rebuild_from_job_dirs(wd: Path, damage: list[_store.Damage]) -> tuple[SweepSpec, list[JobResult]]:
    """The results of a mushin_nb sweep whose manifest and per-run copies are lost:
    the grid from Hydra's ``multirun.yaml``, each job's cell from its own
    ``.hydra/overrides.yaml`` (never from an index a lost grid defined), each job's
    result from its result file. A job without a result leaves its cell missing."""
    from dataclasses import replace

    spec, plain = load_plain_hydra(wd, damage)
    # the runs of this sweep are those in its current index (a fresh run archives the
    # index, a resume appends to it): a result file left by a replaced run is not one
    current = {str(d.get("run_id", "")) for d in _store.read_index_raw(wd)[0]}
    recs = _store.read_records(wd, damage=damage)
    if current:
        recs = [r for r in recs if r.run_id in current]
    records = {r.subdir: r for r in recs}
    out = [replace(records[r.subdir], index=r.index) for r in plain if r.subdir in records]
    out.sort(key=lambda r: r.job_num)
    return spec, out


def upstream_parameter_names(spec: SweepSpec, jobdir_name: str = "job_dir") -> set[str]:
    """For a sweep over ``target_job_dirs`` (a swept ``job_dir``): the parameter names
    of the upstream sweep's jobs, which become coordinates along ``job_dir``; else
    an empty set."""
    targets = next((p for p in spec.swept if p.name == jobdir_name), None)
    names: set[str] = set()
    if targets is not None:
        for d in targets.values:
            try:
                names.update(job_params(Path(d)))
            except Exception:  # not a readable job directory: its parameters are unknown
                pass
    return names
