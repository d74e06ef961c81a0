"""Results -> ``xarray.Dataset`` keyed by parameter values; NetCDF that round-trips."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._store import JobResult

if TYPE_CHECKING:
    import xarray as xr

    from ._sweep import SweepSpec

__all__ = ["build_dataset", "save_netcdf", "load_netcdf"]


def _fixed_coord(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def attr_value(value: Any) -> Any:
    """A fixed parameter's value as a Dataset attribute (rai mushin: a list is stored as
    its string form)."""
    if isinstance(value, list):
        return str(value)
    return value


def fill_for(dtype: np.dtype) -> tuple[np.dtype, Any]:
    """The dtype and fill of a metric's array while cells are missing: NaN (ints and
    bools promoted to float), "" for text, no fill (None) for other kinds."""
    if dtype.kind == "f" or dtype.kind == "c":
        return dtype, np.nan
    if dtype.kind in "iub":
        return np.dtype("float64"), np.nan
    if dtype.kind in "US":
        return dtype, ""
    return dtype, None


class Grid:
    """The Dataset's grid: its dimensions (swept parameters, and fixed ones as
    singleton dimensions if asked), their coordinates, and where a cell lands."""

    def __init__(self, spec: SweepSpec, singleton: bool) -> None:
        from ._sweep import sanitize_coord_values

        self.spec = spec
        self.dims: list[str] = []
        self.coords: dict[str, Any] = {}
        self.swept_axes: list[int] = []  # position of each swept param among grid dims
        for p in spec.params:
            if p.swept:
                self.swept_axes.append(len(self.dims))
                self.dims.append(p.name)
                self.coords[p.name] = sanitize_coord_values(list(p.values))
            elif singleton:
                self.dims.append(p.name)
                self.coords[p.name] = [_fixed_coord(p.value)]
        self.shape = tuple(len(self.coords[d]) for d in self.dims)

    def full_index(self, r: JobResult) -> tuple[int, ...]:
        """The cell of ``r`` in this grid (its index, with 0 for each singleton dimension)."""
        if len(self.swept_axes) == len(self.dims):
            return tuple(r.index)
        idx = [0] * len(self.dims)
        for ax, i in zip(self.swept_axes, r.index):
            idx[ax] = i
        return tuple(idx)

    def cell_label(self, r: JobResult) -> str:
        return (
            ", ".join(f"{p.name}={p.values[i]!r}" for p, i in zip(self.spec.swept, r.index)) or "the one job"
        )

    def examples(self, pairs: list[tuple[JobResult, np.ndarray]], key: Callable[[np.ndarray], Any]) -> str:
        by_key: dict[Any, str] = {}
        for r, v in pairs:
            if key(v) not in by_key:
                by_key[key(v)] = self.cell_label(r)
        return examples_text(by_key)


def examples_text(by_key: Mapping[Any, str]) -> str:
    """``{key: the first cell that has it}`` as the examples of a note."""
    return "; ".join(f"{k} (e.g. at {lab})" for k, lab in by_key.items())


# the notes of a metric that cannot be shown as returned (one text, for every builder)
def note_text_mix(name: str, examples: str) -> str:
    return f"The metric {name!r} is text in some jobs and not in others ({examples}); it is left out."


def note_objects(name: str, examples: str) -> str:
    return f"The metric {name!r} holds Python objects ({examples}); it is left out."


def note_ndim(name: str, examples: str) -> str:
    return (
        f"The metric {name!r} has a different number of dimensions in different jobs: "
        f"{examples}; it is left out (return one shape in every job)."
    )


def note_ragged(name: str, examples: str, mshape: tuple[int, ...]) -> str:
    return (
        f"The metric {name!r} has different shapes in different jobs: "
        f"{examples}; it is padded to {mshape} with NaN ('' for text)."
    )


def note_types(name: str, error: str, examples: str) -> str:
    return f"The metric {name!r} has types that do not mix ({error}; {examples}); it is left out."


def _metric_names(done: Sequence[JobResult]) -> list[str]:
    """Metric names in the order the (earliest) jobs returned them."""
    names: list[str] = []
    seen: set[str] = set()
    for r in done:
        for k in r.metrics or {}:
            if k not in seen:
                seen.add(k)
                names.append(k)
    return names


def _coord_values(done: Sequence[JobResult], name: str, names: list[str]) -> np.ndarray | None:
    """The coordinate taken from the metric ``name`` (e.g. "epoch"): the longest one
    when jobs differ."""
    if name not in names:
        raise ValueError(f"coord_from_metrics={name!r} is not one of the metrics {names}; name one of them.")
    out: np.ndarray | None = None
    for r in done:
        if r.metrics is not None and name in r.metrics:
            v = np.asarray(r.metrics[name])
            v = v if v.ndim <= 1 else v.reshape(-1, v.shape[-1])[0]
            if out is None or v.size > out.size:
                out = v
    return out


def _unmixable(name: str, pairs: list[tuple[JobResult, np.ndarray]], grid: Grid) -> str | None:
    """Why the values of metric ``name`` cannot make one variable (None if they can)."""
    vals = [v for _, v in pairs]
    kinds = {"text" if v.dtype.kind in "US" else "other" for v in vals}
    if len(kinds) > 1:
        return note_text_mix(name, grid.examples(pairs, lambda v: v.dtype.name))
    if any(v.dtype.kind == "O" for v in vals):
        return note_objects(name, grid.examples(pairs, lambda v: v.dtype.name))
    if len({v.ndim for v in vals}) > 1:
        return note_ndim(name, grid.examples(pairs, lambda v: v.shape))
    return None


def _metric_array(
    name: str, pairs: list[tuple[JobResult, np.ndarray]], grid: Grid, notes: list[str]
) -> np.ndarray | None:
    """The grid-shaped array of metric ``name`` (None if it is left out: said in ``notes``).
    Cells without a value are NaN ("" for text); ragged values are padded."""
    why = _unmixable(name, pairs, grid)
    if why is not None:
        notes.append(why)
        return None
    vals = [v for _, v in pairs]
    shapes = {v.shape for v in vals}
    mshape = tuple(max(s[n] for s in shapes) for n in range(len(vals[0].shape)))
    ragged = len(shapes) > 1
    if ragged:
        notes.append(note_ragged(name, grid.examples(pairs, lambda v: v.shape), mshape))
    try:
        dtype = np.result_type(*dict.fromkeys(v.dtype for v in vals))  # as of all values, faster
    except TypeError as e:  # e.g. bytes and str (numpy's DTypePromotionError)
        notes.append(note_types(name, str(e), grid.examples(pairs, lambda v: v.dtype.name)))
        return None
    complete = len(pairs) == int(np.prod(grid.shape)) and not ragged
    fill = None
    if not complete:
        dtype, fill = fill_for(dtype)
    arr = np.empty(grid.shape + mshape, dtype=dtype)
    if fill is not None:
        arr[...] = fill
    if ragged:
        for r, v in pairs:
            arr[grid.full_index(r) + tuple(slice(0, n) for n in v.shape)] = v
    else:
        _place(arr, np.stack(vals).astype(dtype, copy=False), [r for r, _ in pairs], grid)
    return arr


def _place(arr: np.ndarray, stacked: np.ndarray, results: list[JobResult], grid: Grid) -> None:
    """Write ``stacked[k]`` at the cell of ``results[k]`` of ``arr``."""
    if grid.dims:
        idx = np.array([grid.full_index(r) for r in results], dtype=np.intp)
        arr[tuple(idx.T)] = stacked
    else:  # no swept parameter: one job
        arr[...] = stacked[-1]


_SCALARS = (float, int, bool, str)


def _scalar_array(pairs: list[tuple[JobResult, Any]], grid: Grid) -> np.ndarray | None:
    """The grid-shaped array of a metric whose values are all Python scalars of one type
    (the usual case: one numpy call instead of one per value); None otherwise. The same
    array :func:`_metric_array` makes of them."""
    t = type(pairs[0][1])
    if t not in _SCALARS or any(type(v) is not t for _, v in pairs):
        return None
    vals = [v for _, v in pairs]
    if t is int and not all(-(2**63) <= v < 2**63 for v in vals):
        return None
    col = np.array(vals)
    dtype, fill = col.dtype, None
    if len(pairs) != int(np.prod(grid.shape)):
        dtype, fill = fill_for(col.dtype)
    arr = np.empty(grid.shape, dtype=dtype)
    if fill is not None:
        arr[...] = fill
    _place(arr, col.astype(dtype, copy=False), [r for r, _ in pairs], grid)
    return arr


_NONE = object()


def nullable_text(arr: np.ndarray, present: Sequence[JobResult], grid: Grid) -> np.ndarray:
    """A text metric that a job returned None for: an object array of ``str``, NaN in
    each cell without a text (that job's, and those of the jobs not done), as in a
    number metric; NaN, not None, because xarray turns None into NaN in an object array
    (``isnull()`` finds both). ``save_netcdf``/``load_netcdf`` keep them; a returned
    ``""`` stays ``""``."""
    out = arr.astype(object)
    has = np.zeros(grid.shape, dtype=bool)
    for r in present:
        has[grid.full_index(r)] = True
    out[~has] = np.nan
    return out


def none_fill(values: np.ndarray) -> str | None:
    """For an object array of ``str`` and missing cells (None or NaN: a text metric
    with None, see :func:`nullable_text`): a text that none of its values is, which
    NetCDF stores in the missing cells (the variable's ``_FillValue``) and xarray reads
    back as NaN. None for any other array.

    >>> none_fill(np.array(["a", np.nan], dtype=object)) == chr(31), none_fill(np.array(["a", "b"]))
    (True, None)
    """
    if values.dtype != object or not values.size:
        return None
    flat = values.ravel().tolist()
    missing = [v for v in flat if type(v) is not str]
    if not missing or not all(v is None or (type(v) is float and v != v) for v in missing):
        return None
    fill = "\x1f"  # the ASCII unit separator; longer if a value is just that
    while fill in flat:
        fill += "\x1f"
    return fill


def _metric_vars(
    done: Sequence[JobResult], grid: Grid, coord_from_metrics: str | None, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics' data variables and the coordinates of their own dimensions."""
    names = _metric_names(done)
    extra_coord_values = None
    if coord_from_metrics is not None:
        extra_coord_values = _coord_values(done, coord_from_metrics, names)
    data_vars: dict[str, Any] = {}
    extra_coords: dict[str, Any] = {}
    for name in names:
        if name == coord_from_metrics:
            continue
        pairs = [(r, v) for r in done if r.metrics and (v := r.metrics.get(name, _NONE)) is not _NONE]
        present = [(r, v) for r, v in pairs if v is not None]
        if not present:
            continue
        arr = _scalar_array(present, grid)
        if arr is None:
            arr = _metric_array(name, [(r, np.asarray(v)) for r, v in present], grid, notes)
        if arr is None:
            continue
        if arr.dtype.kind == "U" and len(present) < len(pairs):  # a job returned None
            arr = nullable_text(arr, [r for r, _ in present], grid)
        extra: list[str] = []
        for n, size in enumerate(arr.shape[len(grid.shape) :]):
            if (
                n == 0
                and coord_from_metrics is not None
                and extra_coord_values is not None
                and extra_coord_values.size == size
            ):
                extra.append(coord_from_metrics)
                extra_coords.setdefault(coord_from_metrics, extra_coord_values)
            else:
                dname = f"{name}_dim{n}"
                extra.append(dname)
                extra_coords.setdefault(dname, np.arange(size))
        data_vars[name] = (tuple(grid.dims) + tuple(extra), arr)
    return data_vars, extra_coords


def rename_clashes(
    data_vars: dict[str, Any], taken_coords: set[str], builtin: Mapping[str, Any], notes: list[str]
) -> dict[str, Any]:
    """A metric named like a coordinate, a dimension or mushin_nb's own variables (left
    by an older version, which did not refuse such names) is shown under another name."""
    taken = taken_coords | set(builtin) | set(data_vars)
    for name in list(data_vars):
        if name in taken_coords or name in builtin:
            new, k = f"{name}_metric", 2
            while new in taken:
                new, k = f"{name}_metric{k}", k + 1
            taken.add(new)
            data_vars = {(new if n == name else n): v for n, v in data_vars.items()}
            what = "a coordinate" if name in taken_coords else "a variable of mushin_nb"
            notes.append(f"The metric {name!r} has the name of {what}; it is shown as {new!r}.")
    return data_vars


def build_dataset(
    spec: SweepSpec,
    results: Sequence[JobResult],
    *,
    sweep_dir: Path | None = None,
    include_status: bool = False,
    status: np.ndarray | None = None,
    include_working_subdirs_as_data_var: bool = False,
    coord_from_metrics: str | None = None,
    non_multirun_params_as_singleton_dims: bool = False,
) -> xr.Dataset:
    """Place each job's metrics at the grid cell of its parameter values.

    Cells without a result are NaN (numbers; ints and bools are promoted to float
    while any cell is missing) or "" (strings). A text metric that a job returned None
    for is an object array, NaN in each cell without a text (a returned "" stays "").
    The job order never matters. What
    cannot be shown as returned (a metric whose jobs disagree on its kind, a ragged
    metric that is padded, a renamed metric) is told in one RuntimeWarning.

    Examples
    --------
    >>> from mushin_nb._store import JobResult
    >>> from mushin_nb._sweep import Param, SweepSpec
    >>> spec = SweepSpec([Param("x", [1, 2, 3], ["1", "2", "3"], swept=True)])
    >>> results = [JobResult(index=(2,), status="done", metrics={"y": 9}),
    ...            JobResult(index=(0,), status="done", metrics={"y": 1})]
    >>> ds = build_dataset(spec, results, include_status=True)
    >>> ds["y"].values.tolist(), ds["status"].values.tolist()
    ([1.0, nan, 9.0], ['done', 'pending', 'done'])
    """
    singleton = non_multirun_params_as_singleton_dims
    grid = Grid(spec, singleton)
    attrs = {p.name: attr_value(p.value) for p in spec.fixed}
    done = [r for r in results if r.status == "done" and r.metrics is not None]
    # what went wrong with which metric: told in one warning per build, never raised
    notes: list[str] = []
    from ._store import paused_gc

    with paused_gc():  # one small array per value, no cycles
        data_vars, extra_coords = _metric_vars(done, grid, coord_from_metrics, notes)

    builtin: dict[str, Any] = {}
    if include_working_subdirs_as_data_var and sweep_dir is not None:
        subdirs = np.full(grid.shape, "", dtype=object)
        for r in results:
            if r.subdir:
                subdirs[grid.full_index(r)] = str(Path(sweep_dir) / r.subdir)
        builtin["working_subdir"] = (tuple(grid.dims), subdirs.astype(str))
    if include_status:
        st = status_array(spec, results) if status is None else status
        if singleton:
            st = st.reshape(grid.shape)
        builtin["status"] = (tuple(grid.dims), st)

    data_vars = rename_clashes(data_vars, set(grid.coords) | set(extra_coords), builtin, notes)
    data_vars.update(builtin)
    ds = make_dataset(data_vars, {**grid.coords, **extra_coords}, attrs)
    if notes:
        of = f" of {sweep_dir}" if sweep_dir is not None else ""
        warnings.warn(
            f"mushin_nb: building the Dataset{of} (the other metrics are as the jobs returned them): "
            + " ".join(notes),
            RuntimeWarning,
            stacklevel=3,
        )
    return ds


_PLAIN_KINDS = "biufcU"  # dtypes xarray takes as they are (no object, datetime, bytes)


def make_dataset(
    data_vars: Mapping[str, Any], coords: Mapping[str, Any], attrs: Mapping[str, Any]
) -> xr.Dataset:
    """``xr.Dataset(data_vars, coords=coords, attrs=attrs)`` (variables given as ``(dims,
    array)``, coordinates of one dimension each), the same Dataset made without xarray
    asking whether each array is a dask array: with dask installed, that question
    imports ``dask.array`` (and scipy), about as long as xarray's own import, in every
    process that reloads a sweep. Arrays and coordinates of other kinds (objects,
    datetimes) are left to ``xr.Dataset``, which converts them.

    Examples
    --------
    >>> import xarray as xr
    >>> vs = {"acc": (("lr",), np.array([0.5, 0.9]))}
    >>> ds = make_dataset(vs, {"lr": [0.1, 1.0]}, {"seed": 0})
    >>> ds.identical(xr.Dataset(vs, coords={"lr": [0.1, 1.0]}, attrs={"seed": 0}))
    True
    """
    import pandas as pd
    import xarray as xr
    from xarray.indexes import PandasIndex

    values = {k: np.asarray(v) for k, v in coords.items() if isinstance(v, list) or type(v) is np.ndarray}
    plain = (
        len(values) == len(coords)
        and all(a.ndim == 1 and a.dtype.kind in _PLAIN_KINDS for a in values.values())
        and all(
            isinstance(v, tuple)
            and len(v) == 2
            and type(v[1]) is np.ndarray
            and v[1].dtype.kind in _PLAIN_KINDS
            for v in data_vars.values()
        )
    )
    if not plain:
        return xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)
    indexes = {k: PandasIndex(pd.Index(a), k, coord_dtype=a.dtype) for k, a in values.items()}
    made = [xr.Coordinates.from_xindex(i) for i in indexes.values()]
    crd = xr.Coordinates({k: c.variables[k] for c in made for k in c}, indexes=indexes)
    variables = {k: xr.Variable(d, a, fastpath=True) for k, (d, a) in data_vars.items()}
    return xr.Dataset(variables, coords=crd, attrs=attrs)


def status_array(spec: SweepSpec, results: Sequence[JobResult]) -> np.ndarray:
    """The state of each cell of ``spec``'s grid (``"pending"`` where no job reported;
    the latest job of a cell, by job number, wins).

    Examples
    --------
    >>> from mushin_nb._store import JobResult
    >>> from mushin_nb._sweep import Param, SweepSpec
    >>> spec = SweepSpec([Param("x", [1, 2], ["1", "2"], swept=True)])
    >>> status_array(spec, [JobResult(index=(1,), status="failed", job_num=0),
    ...                     JobResult(index=(1,), status="done", job_num=1)]).tolist()
    ['pending', 'done']
    """
    st = np.full(spec.shape, "pending", dtype="<U9")
    for r in sorted(results, key=lambda r: r.job_num):
        st[tuple(r.index)] = r.status
    return st


# --------------------------------------------------------------------------- NetCDF

_JSON_ATTRS = "mushin_nb_json_attrs"


def _needs_json(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return True
    if isinstance(v, str):
        return "\x00" in v  # HDF5 strings cannot hold NUL; JSON escapes it
    if isinstance(v, (int, float, np.integer, np.floating)):
        return False
    if isinstance(v, np.ndarray) and v.dtype.kind in "iuf":
        return False
    return True


def encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as NetCDF holds them: what it cannot hold (dicts, None, bools, lists,
    NUL in text) as JSON, named in one more attribute for :func:`load_netcdf`."""
    out: dict[str, Any] = {}
    encoded: list[str] = []
    for k, v in attrs.items():
        if k == _JSON_ATTRS:
            continue
        if _needs_json(v):
            try:
                out[k] = json.dumps(v, ensure_ascii=False, allow_nan=True)
            except TypeError:
                raise TypeError(
                    f"The attribute {k!r} = {v!r} ({type(v).__name__}) cannot be saved to "
                    "NetCDF; use numbers, strings, bools, None, lists or dicts of them."
                ) from None
            encoded.append(k)
        else:
            out[k] = v
    if encoded:
        out[_JSON_ATTRS] = json.dumps(encoded)
    return out


def _decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(attrs)
    enc = out.pop(_JSON_ATTRS, None)
    if enc is not None:
        for k in json.loads(enc):
            if k in out:
                out[k] = json.loads(out[k])
    return out


def netcdf_engine() -> Literal["h5netcdf", "netcdf4"]:
    """The xarray engine that writes NetCDF here (h5netcdf, else netCDF4)."""
    import importlib

    try:
        import h5netcdf  # noqa: F401

        return "h5netcdf"
    except ImportError:
        try:
            importlib.import_module("netCDF4")  # optional: no stubs needed

            return "netcdf4"
        except ImportError:
            raise ImportError(
                "Saving NetCDF needs an engine that writes strings: pip install 'h5netcdf[h5py]'"
            ) from None


def save_netcdf(ds: xr.Dataset, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``ds`` to a NetCDF file that :func:`load_netcdf` reads back identical.

    Attributes NetCDF cannot hold (dicts, None, bools, lists) are stored as JSON
    and decoded on load. The write is atomic: a crash never leaves a partial file at
    ``path`` (the temporary file it may leave beside it is removed by the next save to
    ``path``). An existing file is replaced only with ``overwrite=True``. The file's
    mode follows the umask, as any tool's.

    Examples
    --------
    >>> import xarray as xr, tempfile, os
    >>> ds = xr.Dataset({"acc": ("lr", [0.5, 0.9])}, coords={"lr": [0.1, 1.0]},
    ...                 attrs={"tag": None, "opts": {"a": 1}, "flag": True})
    >>> p = os.path.join(tempfile.mkdtemp(), "sweep.nc")
    >>> _ = save_netcdf(ds, p)
    >>> load_netcdf(p).identical(ds)
    True
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it (or choose another path)."
        )
    out = ds.copy()
    out.attrs = encode_attrs(ds.attrs)
    for name in list(out.variables):
        out[name].attrs = encode_attrs(ds[name].attrs)
        fill = none_fill(out[name].values)  # a text metric's missing cells stay missing
        out[name].encoding = {} if fill is None else {"_FillValue": fill}
    path.parent.mkdir(parents=True, exist_ok=True)
    # the file's mode follows the umask; a temporary file left by an interrupted save
    # (its writer gone) is removed here
    from ._store import create_temp, unlink_quiet

    tmp, fd = create_temp(path)
    os.close(fd)
    try:
        out.to_netcdf(tmp, engine=netcdf_engine())
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    return path


def load_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """Read a file written by :func:`save_netcdf` (or any NetCDF file) into memory.

    Attributes that :func:`save_netcdf` stored as JSON are decoded; string variables
    and coordinates come back as ``str`` arrays (a text metric with missing cells as
    the object array it was saved as, NaN in them); nothing is left open.

    Examples
    --------
    >>> import xarray as xr, tempfile, os
    >>> ds = xr.Dataset({"name": ("seed", ["a", "b"])}, coords={"seed": [0, 1]}, attrs={"cfg": {"k": [1]}})
    >>> p = save_netcdf(ds, os.path.join(tempfile.mkdtemp(), "s.nc"))
    >>> back = load_netcdf(p)
    >>> back.attrs["cfg"], back["name"].dtype.kind
    ({'k': [1]}, 'U')
    """
    import xarray as xr

    with xr.open_dataset(path, engine=netcdf_engine()) as f:
        ds = f.load()
    ds.attrs = _decode_attrs(ds.attrs)
    for name in list(ds.variables):
        var = ds[name]
        var.attrs = _decode_attrs(var.attrs)
        if var.dtype == object and var.size and all(isinstance(x, str) for x in var.values.ravel()):
            ds[name] = var.astype(str)
    for name in list(ds.coords):
        v = ds.coords[name]
        if v.dtype == object and v.size and all(isinstance(x, str) for x in v.values.ravel()):
            ds.coords[name] = v.astype(str)
    ds.encoding = {}
    for name in ds.variables:
        ds[name].encoding = {}
    return ds
