"""Live NetCDF: a sweep's Dataset in a NetCDF file that is written as its jobs finish.

``wf.start(..., save="results.nc")`` (or ``run.save(path)``) writes the file at once with
the whole grid: every variable allocated (contiguous, uncompressed), NaN where no job
has finished, ``status`` saying which cells are which. From then on each cell that
changes is written **in place**, at the byte offset HDF5 gave its variable, at most
``every`` seconds (default 1 s) after it changed. The file's HDF5 metadata is written
once and never touched again, so:

- the file is valid at every moment: any NetCDF reader, in any process, opens it while
  the sweep runs (no lock, no HDF5 single-writer mode, nothing to clear afterwards);
- a writer killed at any point (``kill -9`` of the kernel) leaves it holding every cell
  written before, the rest NaN with its ``status``.

What the layout cannot hold in place (a metric seen for the first time, a dtype that is
promoted, a text longer than its column, a ragged metric that grows) makes the writer
write the whole file again: a new file beside it, renamed over it (a reader that has the
old one open keeps reading the old one). While the sweep runs, text (``status`` and
string metrics) is stored as fixed-width UTF-8 characters, which ``load_netcdf`` (and
xarray) read back as strings. When the sweep ends the file is written once more by
:func:`mushin_nb.save_netcdf`: it is then exactly what ``save_netcdf`` writes of the
final Dataset. A resumed sweep with the same ``save=`` path continues the same file.

Why not HDF5's single-writer/multiple-reader mode (SWMR): measured with h5py 3.16 and
HDF5 2.0, a file open for SWMR writing cannot be opened by a reader that does not ask for
SWMR (xarray's ``open_dataset``, ``ncdump``: "file is already open for write"), and after
a ``kill -9`` of the writer it stays that way until ``h5clear`` is run on it.

Examples
--------
>>> import tempfile, os
>>> from mushin_nb._livedata import LiveDataset
>>> from mushin_nb._dataset import load_netcdf
>>> from mushin_nb._store import JobResult
>>> from mushin_nb._sweep import Param, SweepSpec
>>> live = LiveDataset(SweepSpec([Param("x", [1, 2], ["1", "2"], swept=True)]))
>>> f = LiveNetCDF(live, os.path.join(tempfile.mkdtemp(), "live.nc"), every=0)
>>> live.add(JobResult(index=(0,), status="done", metrics={"y": 0.5}))
>>> f.flush()
>>> ds = load_netcdf(f.path)
>>> ds["y"].values.tolist(), ds["status"].values.tolist()
([0.5, nan], ['done', 'pending'])
>>> live.add(JobResult(index=(1,), status="done", metrics={"y": 1.5}))
>>> f.close()  # the final file: save_netcdf of the final Dataset
>>> load_netcdf(f.path)["y"].values.tolist()
[0.5, 1.5]
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._dataset import encode_attrs, netcdf_engine, none_fill, save_netcdf
from ._errors import refusal

if TYPE_CHECKING:
    import xarray as xr

    from ._livedata import LiveDataset

__all__ = ["LiveNetCDF", "Savers", "DEFAULT_EVERY", "check_save_path"]

DEFAULT_EVERY = 1.0
"""Seconds: the most a changed cell waits before it is written to the file."""
_MIN_WIDTH = 16  # bytes of a text column; doubled as longer texts arrive


@refusal  # a bad save=: IPython shows the caller's frames and the message only
def check_save_path(save: Any, *, resume: bool | str = False, adaptive: Any = None) -> Path | None:
    """``save=`` of ``run()``/``start()`` checked (nothing is written): the absolute path
    of the NetCDF file, or None. An existing file is continued only by a resume; a sweep
    of ``adaptive`` parameters (rounds of sweeps) is refused for now.

    Examples
    --------
    >>> check_save_path(None) is None
    True
    >>> check_save_path(3)
    Traceback (most recent call last):
    ...
    TypeError: save=3: give the path of a NetCDF file to write while the sweep runs (str or pathlib.Path), e.g. save='results.nc'
    """
    if save is None:
        return None
    if not isinstance(save, (str, os.PathLike)) or not str(save):
        raise TypeError(
            f"save={save!r}: give the path of a NetCDF file to write while the sweep runs "
            "(str or pathlib.Path), e.g. save='results.nc'"
        )
    if adaptive:
        raise ValueError(
            f"save={str(save)!r} does not work with adaptive_range(...) values yet; save the Dataset "
            "when the run ends instead: save_netcdf(run.wait(), path)."
        )
    path = Path(save).expanduser().absolute()
    if path.is_dir():
        raise IsADirectoryError(
            f"save={str(save)!r} is a directory; give a file name, e.g. save='{path / 'results.nc'}'"
        )
    if path.exists() and not resume:
        raise FileExistsError(
            f"save={str(save)!r}: the file exists; choose another path or remove it (resume=True continues it)."
        )
    return path


class Savers:
    """The live NetCDF files of one run (``run.save(path)``): flushed by the run's watcher
    thread, closed (written final) when the run ends.

    Examples
    --------
    >>> import tempfile, os
    >>> from mushin_nb._livedata import LiveDataset
    >>> from mushin_nb._sweep import Param, SweepSpec
    >>> savers = Savers(LiveDataset(SweepSpec([Param("x", [1], ["1"], swept=True)])))
    >>> p = savers.save(os.path.join(tempfile.mkdtemp(), "a.nc"), ended=False)
    >>> savers.close(); savers.files
    []
    """

    def __init__(self, live: LiveDataset, *, base: Path | None = None) -> None:
        self.live = live
        self.base = Path.cwd() if base is None else Path(base)  # where relative paths start
        self.files: list[LiveNetCDF] = []
        self._final: set[Path] = set()  # files written final when the run ended
        self._lock = threading.Lock()
        self._closed = False

    def save(
        self, path: str | os.PathLike, *, overwrite: bool = False, every: float | None = None, ended: bool
    ) -> Path:
        """Start writing ``path`` live (once per path); after the run ended (``ended``,
        or :meth:`close` has run), write it once with :func:`save_netcdf` (a file this
        run wrote live is final already). A relative ``path`` is taken from ``base`` (the
        directory the run started in: a job in this process changes the current one)."""
        path = self.base / Path(path).expanduser()
        with self._lock:
            if any(f.path == path for f in self.files) or (path in self._final and path.exists()):
                return path
            if not (ended or self._closed):
                f = LiveNetCDF(
                    self.live, path, overwrite=overwrite, every=DEFAULT_EVERY if every is None else every
                )
                self.files.append(f)
                return path
        return save_netcdf(self.live.snapshot(stacklevel=4), path, overwrite=overwrite)

    def flush_due(self) -> None:
        """Write the cells changed since each file's last write, if it is due. A file
        that cannot be written is told once (a warning) and not written again."""
        for f in list(self.files):
            try:
                f.flush_due()
            except Exception as e:  # a file must never stop the sweep
                self._drop(f, e)

    def close(self) -> None:
        """Write each file final (the run has ended)."""
        with self._lock:
            self._closed = True
            files, self.files = self.files, []
        for f in files:
            try:
                f.close()
                self._final.add(f.path)
            except Exception as e:
                self._drop(f, e)

    def _drop(self, f: LiveNetCDF, e: BaseException) -> None:
        import warnings

        with self._lock:
            if f in self.files:
                self.files.remove(f)
        f.abandon()
        warnings.warn(
            f"mushin_nb: writing {f.path} failed ({type(e).__name__}: {e}); it is no longer written as the "
            "sweep runs. The sweep goes on; save the Dataset when it ends (save_netcdf(run.dataset, path)).",
            RuntimeWarning,
            stacklevel=2,
        )


@dataclass
class _Slot:
    """Where one variable's cells are in the file."""

    offset: int  # of its data (-1: not writable in place, e.g. empty)
    dtype: np.dtype  # as stored
    cell: tuple[int, ...]  # the shape of one cell (its own dimensions)
    width: int  # bytes per text value (0: not text)

    @property
    def cell_bytes(self) -> int:
        n = int(np.prod(self.cell, dtype=np.int64))
        return n * (self.width or self.dtype.itemsize)


class LiveNetCDF:
    """The NetCDF file of a :class:`~mushin_nb._livedata.LiveDataset`, kept up to date
    in place (see the module's docstring). :meth:`flush` writes the cells changed since
    the last one; :meth:`flush_due` does so if ``every`` seconds have passed; :meth:`close`
    writes the final file."""

    def __init__(
        self,
        live: LiveDataset,
        path: str | os.PathLike,
        *,
        overwrite: bool = False,
        every: float = DEFAULT_EVERY,
    ):
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not every >= 0:
            raise ValueError(f"every={every!r}: give the seconds between writes of the file (a number >= 0)")
        self.path = Path(path).absolute()
        if self.path.is_dir():
            raise IsADirectoryError(
                f"{self.path} is a directory; give a file name, e.g. {self.path / 'results.nc'}"
            )
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists; pass overwrite=True to replace it (or choose another path)."
            )
        try:
            import h5py  # noqa: F401  (the byte offsets of the variables)
        except ImportError:
            raise ImportError(
                "Writing NetCDF while the sweep runs needs h5py: pip install 'h5netcdf[h5py]'"
            ) from None
        self.live = live
        self.every = float(every)
        self._lock = threading.Lock()
        self._dirty = live.watch()
        self._fd: int | None = None
        self._slots: dict[str, _Slot] = {}
        self._sig: Any = None
        self._relayout = -1
        self._last = time.monotonic()
        self._closed = False
        self.cells_written = 0  # cell writes in place (a measure)
        self.rewrites = 0  # whole-file writes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._rewrite()

    # ------------------------------------------------------------ public
    def flush_due(self) -> None:
        """:meth:`flush` if ``every`` seconds passed since the last one."""
        if time.monotonic() - self._last >= self.every:
            self.flush()

    def flush(self) -> None:
        """Write every cell changed since the last flush (in place; the whole file if
        its layout changed), then ask the OS to put it on disk."""
        with self._lock:
            if self._closed:
                return
            self._last = time.monotonic()
            if not self._same_file() or not self._write_cells():
                self._rewrite()

    def close(self) -> None:
        """The final file: :func:`mushin_nb.save_netcdf` of the Dataset now."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.live.unwatch(self._dirty)
            self._close_fd()
            save_netcdf(self.live.snapshot(warn=False), self.path, overwrite=True)

    def abandon(self) -> None:
        """Stop writing (the file keeps what it holds)."""
        with self._lock:
            self._closed = True
            self.live.unwatch(self._dirty)
            self._close_fd()

    # ------------------------------------------------------------ in place
    def _write_cells(self) -> bool:
        """Write the changed cells in place; False if the layout changed (or a text is
        longer than its column): the file must be written whole."""
        live = self.live
        with live.lock:
            if not self._dirty:
                return True
            if live.relayout != self._relayout or live.rebuilds_each_change:
                return False
            data_vars, extra, _ = live.layout()
            if _signature(data_vars, extra) != self._sig:
                return False
            cells = np.array(sorted(self._dirty), dtype=np.intp).reshape(len(self._dirty), -1)
            self._dirty.clear()
            grid = live.grid.shape
            flat = np.asarray(
                np.ravel_multi_index(tuple(cells.T), grid) if grid else np.zeros(len(cells), dtype=np.intp)
            )
            # copies of the changed cells, taken while no record can arrive; status last, so
            # that a reader never sees a cell "done" before its values
            values = {n: a[tuple(cells.T)] if grid else a[None] for n, (_, a) in data_vars.items()}
            del data_vars
        writes: list[tuple[int, bytes]] = []
        for name in sorted(values, key=lambda n: n == "status"):
            slot = self._slots[name]
            if not slot.cell_bytes:
                continue
            data = _stored(values[name], slot) if slot.offset >= 0 else None
            if data is None:  # the file is written whole instead
                return False
            writes.extend(_runs(flat, data, slot))
        fd = self._fd
        assert fd is not None
        for offset, payload in writes:
            os.pwrite(fd, payload, offset)
        if writes:
            os.fdatasync(fd)
        self.cells_written += len(cells)
        return True

    # ------------------------------------------------------------ whole
    def _rewrite(self) -> None:
        """Write the whole file (beside it, then renamed over it) and find where each
        variable's data is."""
        import h5py

        from ._store import create_temp, unlink_quiet

        live = self.live
        with live.lock:
            relayout = live.relayout
            data_vars, extra, _ = live.layout()
            sig = _signature(data_vars, extra)
            ds = live.snapshot(warn=False).copy(deep=True)  # no snapshot outlives the lock
            self._dirty.clear()
            del data_vars
        out, widths = _file_dataset(ds)
        tmp, fd = create_temp(self.path)
        os.close(fd)
        try:
            out.to_netcdf(tmp, engine=netcdf_engine())
            slots: dict[str, _Slot] = {}
            with h5py.File(tmp, "r") as f:
                for name in ds.data_vars:
                    h = f[name] if name in f else f["_nc4_non_coord_" + str(name)]
                    assert isinstance(h, h5py.Dataset)  # a data variable is an HDF5 dataset
                    offset = h.id.get_offset() if h.chunks is None else None
                    grid_ndim = len(live.grid.shape)
                    slots[str(name)] = _Slot(
                        offset=-1 if offset is None else int(offset),
                        dtype=np.dtype(h.dtype),
                        cell=tuple(ds[name].shape[grid_ndim:]),
                        width=widths.get(str(name), 0),
                    )
            new_fd = os.open(tmp, os.O_WRONLY)
            try:
                os.fsync(new_fd)
                os.replace(tmp, self.path)
            except BaseException:
                os.close(new_fd)
                raise
        except BaseException:
            unlink_quiet(tmp)
            raise
        self._close_fd()
        self._fd = new_fd
        self._slots = slots
        self._sig = sig
        self._relayout = relayout
        self.rewrites += 1

    def _same_file(self) -> bool:
        """The file at the path is still the one this writer writes (not deleted or replaced)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        fd = self._fd
        return fd is not None and os.path.samestat(st, os.fstat(fd))

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


def _signature(data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]], extra: dict[str, int]) -> Any:
    """What the file's layout depends on: names, dimensions, shapes, stored dtypes (text
    by kind only: its width is checked per value)."""
    return (
        tuple(
            (n, d, a.shape, a.dtype.kind if a.dtype.kind in "US" else a.dtype.str)
            for n, (d, a) in data_vars.items()
        ),
        tuple(extra.items()),
    )


def _width(a: np.ndarray) -> int:
    """The column width (bytes) for the texts of ``a``: a power of two, >= 16."""
    need = np.char.encode(a, "utf-8").dtype.itemsize if a.dtype.kind == "U" and a.size else a.dtype.itemsize
    w = _MIN_WIDTH
    while w < need:
        w *= 2
    return w


def _file_dataset(ds: xr.Dataset) -> tuple[xr.Dataset, dict[str, int]]:
    """``ds`` as the live file stores it: text as fixed-width UTF-8 characters, attributes
    as :func:`save_netcdf` encodes them, no chunking or compression (contiguous data)."""
    import xarray as xr

    out = ds.copy()
    out.attrs = encode_attrs(ds.attrs)
    widths: dict[str, int] = {}
    for name in list(out.data_vars):
        v = out[name].variable
        if v.dtype.kind in "US":
            w = _width(v.values)
            data = np.char.encode(v.values, "utf-8") if v.dtype.kind == "U" else v.values
            attrs = {"_Encoding": "utf-8"} if v.dtype.kind == "U" else {}
            out[name] = xr.Variable(v.dims, data.astype(f"S{w}"), attrs, encoding={"dtype": "S1"})
            widths[str(name)] = w
        else:
            out[name].attrs = encode_attrs(v.attrs)
            fill = none_fill(v.values)  # a text metric with None: NaN stays NaN
            out[name].encoding = {} if fill is None else {"_FillValue": fill}
    for name in out.coords:
        out[name].attrs = encode_attrs(ds[name].attrs)
        out[name].encoding = {}
    return out, widths


def _stored(values: np.ndarray, slot: _Slot) -> np.ndarray | None:
    """The changed cells' values (one row per cell) as the file stores them; None if a
    text does not fit its column."""
    if slot.width:
        raw = np.char.encode(values, "utf-8") if values.dtype.kind == "U" else values
        if raw.dtype.itemsize > slot.width:
            return None
        return np.ascontiguousarray(raw.astype(f"S{slot.width}"))
    return np.ascontiguousarray(values.astype(slot.dtype, copy=False))


def _runs(flat: np.ndarray, data: np.ndarray, slot: _Slot) -> list[tuple[int, bytes]]:
    """(offset, bytes) writes of the cells at ``flat`` (sorted), consecutive cells
    joined into one write."""
    size = slot.cell_bytes
    raw = data.reshape(len(flat), -1).view(np.uint8).reshape(len(flat), size)
    out: list[tuple[int, bytes]] = []
    start = 0
    for k in range(1, len(flat) + 1):
        if k == len(flat) or flat[k] != flat[k - 1] + 1:
            out.append((slot.offset + int(flat[start]) * size, raw[start:k].tobytes()))
            start = k
    return out
