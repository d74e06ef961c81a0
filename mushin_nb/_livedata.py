"""The Dataset of a running sweep, kept in place: O(1) per record, snapshots no one can corrupt.

:class:`LiveDataset` holds one grid-shaped array per metric (allocated when the metric is
first seen) and the ``status`` array, and writes each finished job's values into its
cell. A read (:meth:`LiveDataset.snapshot`) wraps read-only views of these arrays in a
new ``xarray.Dataset``: it costs the same at 100 cells as at 100,000, and no caller can
change what a later read shows (an in-place edit raises; replacing a variable or an
attribute changes only the caller's own object).

A snapshot never changes after it is taken: before the engine writes into an array that
a snapshot still holds (its Python reference count says so), it writes into a copy
instead (copy-on-write). A reader that drops each Dataset before the next event (a
redraw, a subscriber) costs no copy at all; one that keeps them costs one copy per
array per read, never one per event.

The Dataset is exactly what :func:`mushin_nb._dataset.build_dataset` makes of the same
results (dtype promotion while cells are missing, ragged metrics padded, text metrics,
metrics left out or renamed, with the same one warning per change).

Examples
--------
>>> from mushin_nb._store import JobResult
>>> from mushin_nb._sweep import Param, SweepSpec
>>> spec = SweepSpec([Param("x", [1, 2, 3], ["1", "2", "3"], swept=True)])
>>> live = LiveDataset(spec)
>>> live.add(JobResult(index=(2,), status="done", metrics={"y": 9}))
>>> ds = live.snapshot()
>>> ds["y"].values.tolist(), ds["status"].values.tolist()
([nan, nan, 9.0], ['pending', 'pending', 'done'])
>>> ds["y"].values[0] = 1.0
Traceback (most recent call last):
...
ValueError: assignment destination is read-only
"""

from __future__ import annotations

import copy
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._dataset import (
    Grid,
    attr_value,
    build_dataset,
    examples_text,
    fill_for,
    note_ndim,
    note_objects,
    note_ragged,
    note_text_mix,
    note_types,
    rename_clashes,
)
from ._store import STATES, JobResult

if TYPE_CHECKING:
    import xarray as xr

    from ._sweep import SweepSpec

__all__ = ["LiveDataset", "StatusCells"]

# kinds whose arrays are kept in place; any other (dates, raw records: refused for new
# results, possible in an old directory) makes the Dataset be rebuilt per change instead
_FAST_KINDS = "biufcSU"


class _Probe:
    def __init__(self) -> None:
        self.buf = {"a": np.empty(1)}

    def refs(self, key: str) -> int:
        a = self.buf[key]
        return sys.getrefcount(a)


# the reference count of an array that only its LiveDataset holds, seen from _own()
_UNSHARED = _Probe().refs("a")


class _Metric:
    """What is known of one metric: its values' kinds, dtypes, shapes (each with the
    first cell that had it, for the notes) and where its arrays are."""

    __slots__ = (
        "name",
        "count",
        "text",
        "other",
        "objects",
        "ndims",
        "shapes",
        "dtypes",
        "dtype",
        "error",
        "mshape",
        "nulls",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0  # cells with a value (not None)
        self.text = False
        self.other = False
        self.objects = False
        self.ndims: set[int] = set()
        self.shapes: dict[tuple[int, ...], str] = {}
        self.dtypes: dict[np.dtype, str] = {}
        self.dtype: np.dtype | None = None
        self.error: str | None = None  # the dtypes do not mix
        self.mshape: tuple[int, ...] = ()
        self.nulls = False  # a job returned None for it

    @property
    def left_out(self) -> bool:
        return (self.text and self.other) or self.objects or len(self.ndims) > 1 or self.error is not None

    @property
    def ragged(self) -> bool:
        return len(self.shapes) > 1

    def notes(self) -> list[str]:
        """The notes :func:`build_dataset` gives for this metric, in its order."""
        if not self.count:
            return []
        by_name: dict[str, str] = {}
        for dt, lab in self.dtypes.items():
            by_name.setdefault(dt.name, lab)
        if self.text and self.other:
            return [note_text_mix(self.name, examples_text(by_name))]
        if self.objects:
            return [note_objects(self.name, examples_text(by_name))]
        if len(self.ndims) > 1:
            return [note_ndim(self.name, examples_text(self.shapes))]
        out = []
        if self.ragged:
            out.append(note_ragged(self.name, examples_text(self.shapes), self.mshape))
        if self.error is not None:
            out.append(note_types(self.name, self.error, examples_text(by_name)))
        return out


class LiveDataset:
    """The whole grid of a sweep as its records arrive (see the module's docstring).

    ``results`` returns the sweep's results in the order :func:`build_dataset` gets
    them; it is called only in the rare cases that need a rebuild (a cell's result
    replaced, a metric of a kind kept no other way). Not thread-safe by itself except
    through :attr:`lock`, which every method takes.
    """

    def __init__(
        self,
        spec: SweepSpec,
        *,
        sweep_dir: Path | None = None,
        results: Callable[[], Sequence[JobResult]] | None = None,
    ) -> None:
        self.spec = spec
        self.sweep_dir = sweep_dir
        self._results = results or (lambda: [])
        self.lock = threading.RLock()
        self.grid = Grid(spec, False)
        self.size = int(np.prod(self.grid.shape, dtype=np.int64))
        self.attrs = {p.name: attr_value(p.value) for p in spec.fixed}
        self._plain_attrs = all(
            isinstance(v, (bool, int, float, str, type(None))) for v in self.attrs.values()
        )
        self._buf: dict[str, np.ndarray] = {"status": np.full(self.grid.shape, "pending", dtype="<U9")}
        self.counts = {s: 0 for s in STATES}
        self.counts["pending"] = self.size
        self._metrics: dict[str, _Metric] = {}
        self._placed: set[tuple[int, ...]] = set()  # cells whose metrics are in the arrays
        self.version = 0
        self._warned = -1
        self._rebuild_each = False  # a metric of a kind not kept in place: build_dataset per change
        self._built: tuple[int, Any] | None = None
        self._caught: list[tuple[Any, Any]] = []
        self._coords: tuple[tuple[tuple[str, int], ...], Any] | None = None
        self._watchers: list[set[tuple[int, ...]]] = []
        self.relayout = 0  # counts rebuilds (a watcher rewrites everything when it changes)
        self.copies = 0  # copy-on-write copies made (a measure for the benchmarks)

    # ------------------------------------------------------------ writing
    def _own(self, key: str) -> np.ndarray:
        """The array ``key``, copied first if a snapshot still holds it."""
        a = self._buf[key]
        if sys.getrefcount(a) > _UNSHARED:
            a = self._buf[key] = a.copy()
            self.copies += 1
        return a

    def _touch(self, idx: tuple[int, ...]) -> None:
        self.version += 1
        for w in self._watchers:
            w.add(idx)

    def set_status(self, idx: tuple[int, ...], state: str) -> None:
        """Set one cell's state (``pending``, ``running``, ``done``, ``failed``, ``cancelled``)."""
        with self.lock:
            old = str(self._buf["status"][idx])
            if old == state:
                self.version += 1  # build_dataset's callers count every write as a change
                return
            self._own("status")[idx] = state
            self.counts[old] = self.counts.get(old, 0) - 1
            self.counts[state] = self.counts.get(state, 0) + 1
            self._touch(idx)

    def set_status_where(self, mask: np.ndarray, state: str) -> None:
        """Set the state of every cell where ``mask`` is true."""
        with self.lock:
            if not mask.any():
                self.version += 1
                return
            self._own("status")[mask] = state
            vals, n = np.unique(self._buf["status"], return_counts=True)
            self.counts = {s: 0 for s in STATES}
            self.counts.update({str(v): int(c) for v, c in zip(vals, n)})
            self.version += 1
            for w in self._watchers:
                w.update(tuple(int(i) for i in ix) for ix in np.argwhere(mask))

    def add(self, r: JobResult, *, replaces: bool = False) -> None:
        """Take one record: its cell's state, and its metrics if it is done.
        ``replaces``: the cell had a record already (its place in the results order
        is the earlier one's, so the metrics are placed again from all results)."""
        with self.lock:
            self.set_status(r.index, r.status)
            has = r.status == "done" and r.metrics is not None
            if replaces and (has or r.index in self._placed):
                self._rebuild()
            elif has:
                self._place(r)

    def _rebuild(self) -> None:
        for m in self._metrics.values():
            self._drop(m.name)
        self._metrics = {}
        self._placed = set()
        self._rebuild_each = False
        self.relayout += 1
        for r in self._results():
            if r.status == "done" and r.metrics is not None:
                self._place(r)
        self.version += 1

    def _drop(self, name: str) -> None:
        self._buf.pop("m" + name, None)
        self._buf.pop("x" + name, None)

    def _place(self, r: JobResult) -> None:
        idx = r.index
        self._placed.add(idx)
        for name, value in (r.metrics or {}).items():
            m = self._metrics.get(name)
            if m is None:
                m = self._metrics[name] = _Metric(name)
            if value is None:
                m.nulls = True
                if m.text:  # text with None: build_dataset's object array (the slow way)
                    self._rebuild_each = True
                continue
            self._put(m, idx, np.asarray(value), r)
        self._touch(idx)

    def _put(self, m: _Metric, idx: tuple[int, ...], v: np.ndarray, r: JobResult) -> None:
        m.count += 1
        dt = v.dtype
        if dt.kind in "US":
            m.text = True
            if m.nulls:
                self._rebuild_each = True
        else:
            m.other = True
        if dt.kind == "O":
            m.objects = True
        new_dtype = dt not in m.dtypes
        if new_dtype:
            m.dtypes[dt] = self.grid.cell_label(r)
        shape = v.shape
        if shape not in m.shapes:
            m.shapes[shape] = self.grid.cell_label(r)
        m.ndims.add(v.ndim)
        if m.left_out:
            self._drop(m.name)
            return
        if new_dtype:
            try:
                m.dtype = np.result_type(*m.dtypes)
            except TypeError as e:  # e.g. bytes and str (numpy's DTypePromotionError)
                m.error = str(e)
                self._drop(m.name)
                return
        assert m.dtype is not None
        if m.dtype.kind not in _FAST_KINDS:
            self._rebuild_each = True
        mshape = shape if len(m.shapes) == 1 else tuple(max(a, b) for a, b in zip(m.mshape, shape))
        self._layout(m, mshape)
        cell = idx + tuple(slice(0, n) for n in shape) if m.ragged else idx
        self._own("m" + m.name)[cell] = v
        if "x" + m.name in self._buf:
            self._own("x" + m.name)[cell] = v

    def _layout(self, m: _Metric, mshape: tuple[int, ...]) -> None:
        """(Re)allocate the arrays of ``m`` for its dtype and cell shape so far."""
        assert m.dtype is not None
        shape = self.grid.shape + mshape
        store, fill = fill_for(m.dtype)  # while cells are missing
        key, xkey = "m" + m.name, "x" + m.name
        buf = self._buf.get(key)
        if buf is None or buf.dtype != store or buf.shape != shape:
            new = np.empty(shape, dtype=store)
            if fill is not None:
                new[...] = fill
            if buf is not None:
                new[(Ellipsis,) + tuple(slice(0, n) for n in m.mshape)] = buf
            self._buf[key] = new
        # ints and bools are exact once every cell has a value: kept beside, in their own dtype
        if m.dtype.kind in "iub" and not m.ragged:
            x = self._buf.get(xkey)
            if x is None or x.dtype != m.dtype:
                self._buf[xkey] = np.zeros(shape, dtype=m.dtype) if x is None else x.astype(m.dtype)
        else:
            self._buf.pop(xkey, None)
        m.mshape = mshape

    # ------------------------------------------------------------ reading
    @property
    def rebuilds_each_change(self) -> bool:
        """True if a metric of a kind not kept in place makes each change rebuild the Dataset."""
        return self._rebuild_each

    def watch(self) -> set[tuple[int, ...]]:
        """A set that collects every cell changed from now on (for a file written in
        place); :meth:`unwatch` it when done."""
        with self.lock:
            s: set[tuple[int, ...]] = set()
            self._watchers.append(s)
            return s

    def unwatch(self, s: set[tuple[int, ...]]) -> None:
        with self.lock:
            self._watchers = [w for w in self._watchers if w is not s]

    def layout(self) -> tuple[dict[str, tuple[tuple[str, ...], np.ndarray]], dict[str, int], list[str]]:
        """The Dataset's data variables as ``{name: (dims, array)}`` (read-only views,
        metrics renamed as :func:`build_dataset` does, ``status`` last), the sizes of
        the metrics' own dimensions, and the notes. Only in place: see :meth:`snapshot`."""
        with self.lock:
            data_vars: dict[str, Any] = {}
            extra: dict[str, int] = {}
            notes: list[str] = []
            dims = tuple(self.grid.dims)
            for m in self._metrics.values():
                notes.extend(m.notes())
                if not m.count or m.left_out:
                    continue
                complete = m.count == self.size and not m.ragged
                key = "x" + m.name if complete and "x" + m.name in self._buf else "m" + m.name
                own = tuple(f"{m.name}_dim{n}" for n in range(len(m.mshape)))
                for d, size in zip(own, m.mshape):
                    extra.setdefault(d, size)
                data_vars[m.name] = (dims + own, _readonly(self._buf[key]))
            builtin = {"status": (dims, _readonly(self._buf["status"]))}
            data_vars = rename_clashes(data_vars, set(self.grid.coords) | set(extra), builtin, notes)
            data_vars.update(builtin)
            return data_vars, extra, notes

    def snapshot(self, *, stacklevel: int = 3, warn: bool = True) -> xr.Dataset:
        """The Dataset now: the whole grid, metrics where jobs finished, NaN ("" for
        text) elsewhere, and ``status``. Its arrays are read-only views that never change;
        the first read after a change warns once if a metric cannot be shown as returned
        (``warn=False``: not by this read)."""
        with self.lock:
            if self._rebuild_each:
                return self._rebuilt(stacklevel + 1, warn)
            data_vars, extra, notes = self.layout()
            ds = self._assemble(data_vars, extra)
            warn = warn and bool(notes) and self._warned != self.version
            if warn:
                self._warned = self.version
        if warn:
            self._warn(notes, stacklevel + 1)
        return ds

    def _warn(self, notes: list[str], stacklevel: int) -> None:
        of = f" of {self.sweep_dir}" if self.sweep_dir is not None else ""
        warnings.warn(
            f"mushin_nb: building the Dataset{of} (the other metrics are as the jobs returned them): "
            + " ".join(notes),
            RuntimeWarning,
            stacklevel=stacklevel,
        )

    def _rebuilt(self, stacklevel: int, warn: bool) -> xr.Dataset:
        """The slow way (a metric of a kind not kept in place): build_dataset per change."""
        if self._built is None or self._built[0] != self.version:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = build_dataset(
                    self.spec,
                    list(self._results()),
                    sweep_dir=self.sweep_dir,
                    include_status=True,
                    status=self._buf["status"].copy(),
                )
            for v in ds.variables.values():
                if isinstance(v.data, np.ndarray) and v.data.flags.owndata:
                    v.data.flags.writeable = False
            self._built = (self.version, ds)
            self._caught = [(w.message, w.category) for w in caught]
            self._warned = -1
        if warn and self._warned != self.version:
            self._warned = self.version
            for message, category in self._caught:
                warnings.warn(message, category, stacklevel=stacklevel)
        return self._built[1].copy(deep=False)

    def _coordinates(self, extra: dict[str, int]) -> Any:
        import xarray as xr

        key = tuple(extra.items())
        if self._coords is None or self._coords[0] != key:
            coords = {**self.grid.coords, **{d: np.arange(n) for d, n in extra.items()}}
            made = _dimension_coords(coords)
            if made is None:  # other values: as xr.Dataset makes them
                c = xr.Dataset(coords=coords).coords
                made = (dict(c.variables), dict(c.xindexes))
            self._coords = (key, made)
        return self._coords[1]

    def _assemble(
        self, data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]], extra: dict[str, int]
    ) -> xr.Dataset:
        import xarray as xr

        cvars, indexes = self._coordinates(extra)
        attrs = dict(self.attrs) if self._plain_attrs else copy.deepcopy(self.attrs)
        variables: dict[str, Any] = {n: xr.Variable(d, a, fastpath=True) for n, (d, a) in data_vars.items()}
        variables.update({n: v.copy(deep=False) for n, v in cvars.items()})
        try:
            return xr.Dataset._construct_direct(variables, set(cvars), attrs=attrs, indexes=dict(indexes))
        except (AttributeError, TypeError):  # pragma: no cover - xarray without the fast constructor
            coords = {n: variables.pop(n) for n in cvars}
            return xr.Dataset(variables, coords=coords, attrs=attrs)


def _dimension_coords(coords: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The variables and indexes ``xr.Dataset(coords=coords)`` makes for 1-D coordinates
    of numbers, booleans or text, built from xarray's public ``PandasIndex`` (None for
    other values). ``xr.Dataset(coords=...)`` asks whether each array is a dask array,
    which imports dask where it is installed: ~1 s on the first live ``run.dataset``."""
    import pandas as pd
    from xarray.indexes import PandasIndex

    variables: dict[str, Any] = {}
    indexes: dict[str, Any] = {}
    for name, values in coords.items():
        a = np.asarray(values)
        if a.ndim != 1 or a.dtype.kind not in "biufU":
            return None
        index = PandasIndex(pd.Index(a), name, coord_dtype=a.dtype)
        variables.update(index.create_variables())
        indexes[name] = index
    return variables, indexes


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class StatusCells:
    """The ``status`` array of a :class:`LiveDataset`, read and written as the array
    itself (``cells[idx]``, ``cells[mask] = "failed"``, ``cells == "pending"``): every
    write goes through the live Dataset, which counts the states and copies an array a
    snapshot still holds.

    Examples
    --------
    >>> from mushin_nb._sweep import Param, SweepSpec
    >>> live = LiveDataset(SweepSpec([Param("x", [1, 2], ["1", "2"], swept=True)]))
    >>> cells = StatusCells(live)
    >>> cells[(1,)] = "running"
    >>> cells[cells == "pending"] = "cancelled"
    >>> live.snapshot()["status"].values.tolist(), live.counts["cancelled"]
    (['cancelled', 'running'], 1)
    """

    def __init__(self, live: LiveDataset) -> None:
        self._live = live

    def _array(self) -> np.ndarray:
        return self._live._buf["status"]

    def __getitem__(self, key: Any) -> Any:
        return self._array()[key]

    def __setitem__(self, key: Any, state: str) -> None:
        if isinstance(key, (bool, np.bool_)) or (isinstance(key, np.ndarray) and key.dtype == bool):
            self._live.set_status_where(np.asarray(key, dtype=bool), state)
        else:
            self._live.set_status(tuple(int(i) for i in key), state)

    def __eq__(self, other: object) -> Any:  # type: ignore[override]
        return self._array() == other

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        return self._array() != other

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self._array().copy()
        return a if dtype is None else a.astype(dtype)

    def copy(self) -> np.ndarray:
        return self._array().copy()

    @property
    def ndim(self) -> int:
        return self._array().ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return self._array().shape

    @property
    def size(self) -> int:
        return self._array().size
