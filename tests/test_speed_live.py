"""The live Dataset kept in place (mushin_nb._livedata): the same Dataset as
build_dataset after every event, O(1) per record, snapshots no reader can corrupt."""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, _store, multirun
from mushin_nb._dataset import build_dataset
from mushin_nb._livedata import LiveDataset, StatusCells
from mushin_nb._store import JobResult
from mushin_nb._store._columns import least_records
from mushin_nb._sweep import Param, SweepSpec


def same(live: xr.Dataset, built: xr.Dataset) -> None:
    """Identical, with the same dtypes and the same order of variables."""
    xr.testing.assert_identical(live, built)
    assert list(live.variables) == list(built.variables)
    for name, v in built.variables.items():
        assert live[name].dtype == v.dtype, (name, live[name].dtype, v.dtype)
        assert live[name].dims == v.dims


def _warned(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught if "building the Dataset" in str(w.message)]


def _spec(shape=(2, 3)) -> SweepSpec:
    params = [
        Param(name, list(range(n)), [str(i) for i in range(n)], swept=True) for name, n in zip("xy", shape)
    ]
    return SweepSpec(params + [Param("k", [3], ["3"], swept=False)])


POOL = [
    lambda r: r.randint(-5, 5),
    lambda r: 2**60 + r.randint(0, 9),  # exact only as int64
    lambda r: r.random() < 0.5,
    lambda r: r.random(),
    lambda r: np.float32(r.random()),
    lambda r: np.arange(r.choice([2, 3]), dtype=r.choice(["int64", "float32", "uint8"])),
    lambda r: np.ones((2, r.choice([1, 2]))),
    lambda r: "ab"[: r.randint(0, 2)] + "é" * r.randint(0, 3),
    lambda r: ["a", "bcd"][: r.randint(1, 2)] and np.array(["a", "bcd"][: r.randint(1, 2)]),
    lambda r: None,
    lambda r: {"a": 1},  # a Python object: left out
]
NAMES = ["m", "x", "y_dim0", "status", "s"]  # some collide with coordinates or mushin_nb's own names


def _random_records(seed: int, spec: SweepSpec) -> list[JobResult]:
    rnd = random.Random(seed)
    cells = [tuple(int(i) for i in ix) for ix in np.ndindex(*spec.shape)]
    kinds = [rnd.randrange(len(POOL)) for _ in NAMES]  # each metric mostly of one kind
    out = []
    if seed % 4 == 0:  # every cell done once, one kind per metric: the Dataset ends complete
        for num, idx in enumerate(cells):
            metrics = {name: POOL[k](rnd) for name, k in zip(NAMES[:3], (0, 2, 3 + num % 2))}
            out.append(JobResult(index=idx, status="done", job_num=num, metrics=metrics, subdir=str(num)))
        return out
    for num in range(rnd.randint(1, len(cells) + 3)):
        idx = rnd.choice(cells) if rnd.random() < 0.25 else cells[num % len(cells)]
        status = rnd.choice(["done"] * 6 + ["failed", "cancelled", "running"])
        metrics = None
        if status == "done":
            metrics = {}
            for name, k in zip(rnd.sample(NAMES, rnd.randint(1, 3)), kinds):
                kind = k if rnd.random() < 0.8 else rnd.randrange(len(POOL))
                metrics[name] = POOL[kind](rnd)
        out.append(JobResult(index=idx, status=status, job_num=num, metrics=metrics, subdir=str(num)))
    return out


@pytest.mark.parametrize("seed", range(120))
def test_the_live_dataset_is_build_dataset_after_every_record(seed):
    spec = _spec(() if seed % 5 == 1 else (2, 3) if seed % 3 else (5,))  # () : no swept parameter
    results: dict[tuple[int, ...], JobResult] = {}
    live = LiveDataset(spec, results=lambda: list(results.values()))
    status = np.full(spec.shape, "pending", dtype="<U9")
    for r in _random_records(seed, spec):
        replaces = r.index in results
        results[r.index] = r
        status[r.index] = r.status
        live.add(r, replaces=replaces)
        got, live_notes = _warned(live.snapshot)
        want, notes = _warned(
            lambda: build_dataset(spec, list(results.values()), include_status=True, status=status.copy())
        )
        same(got, want)
        assert live_notes == notes
        _, again = _warned(live.snapshot)
        assert again == []  # warned once per change


def test_promotion_while_cells_are_missing_and_exact_ints_when_complete():
    spec = _spec((3,))
    live = LiveDataset(spec)
    big = 2**62 + 1
    for i in range(3):
        live.add(
            JobResult(index=(i,), status="done", metrics={"n": big + i, "b": i == 1, "t": "é" * (i + 1)})
        )
        ds = live.snapshot()
        if i < 2:
            assert ds["n"].dtype == np.float64 and np.isnan(ds["n"].values[2])
            assert ds["b"].dtype == np.float64 and ds["t"].values.tolist()[2] == ""
    assert ds["n"].dtype == np.int64 and ds["n"].values.tolist() == [big, big + 1, big + 2]
    assert ds["b"].dtype == bool and ds["t"].values.tolist() == ["é", "éé", "ééé"]


# ------------------------------------------------------------------ readers


def test_a_reader_cannot_change_what_later_reads_show():
    live = LiveDataset(_spec((3,)))
    live.add(JobResult(index=(0,), status="done", metrics={"m": 1.0, "v": np.arange(2.0)}))
    ds = live.snapshot()
    with pytest.raises(ValueError, match="read-only"):
        ds["m"].values[1] = 5.0
    with pytest.raises(ValueError, match="read-only|is a view"):  # xarray's words for it
        ds["status"][1] = "done"
    ds["m"] = ds["m"] * 0  # the caller's own object
    ds.attrs["k"] = "changed"
    ds["x"].attrs["units"] = "m"
    again = live.snapshot()
    assert again["m"].values.tolist()[0] == 1.0 and again.attrs["k"] == 3 and again["x"].attrs == {}
    editable = again.copy(deep=True)
    editable["m"].values[1] = 7.0  # a deep copy is the caller's
    assert np.isnan(live.snapshot()["m"].values[1])


def test_a_snapshot_never_changes_and_costs_a_copy_only_while_it_is_held():
    live = LiveDataset(_spec((4,)))
    live.add(JobResult(index=(0,), status="done", metrics={"m": 1.0}))
    held = live.snapshot()
    live.add(JobResult(index=(1,), status="done", metrics={"m": 2.0}))
    assert held["m"].values[0] == 1.0 and np.isnan(held["m"].values[1])
    assert held["status"].values.tolist() == ["done", "pending", "pending", "pending"]
    assert live.copies == 2  # the metric and status arrays, once each, because `held` holds them
    del held
    before = live.copies
    for i in (2, 3):  # a reader that drops each Dataset: written in place, no copy
        live.snapshot()
        live.add(JobResult(index=(i,), status="done", metrics={"m": float(i)}))
    assert live.copies == before
    assert live.snapshot()["m"].values.tolist() == [1.0, 2.0, 2.0, 3.0]


def test_a_sweep_without_swept_parameters():
    live = LiveDataset(_spec(()))
    cells = StatusCells(live)
    cells[cells == "pending"] = "running"  # a 0-d mask
    assert live.counts["running"] == 1
    live.add(JobResult(index=(), status="done", metrics={"m": 2, "v": np.arange(2)}))
    ds = live.snapshot()
    assert ds["m"].dtype == np.int64 and ds["m"].item() == 2 and ds["status"].item() == "done"
    assert ds["v"].dims == ("v_dim0",)


class Mixed(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, y: int) -> dict:
        out = dict(n=x * y, f=np.float32(x / 2), curve=np.arange(x + 1), text="t" * (x + y))
        if y == 1:
            out["late"] = True  # a metric only some jobs return
        if (x, y) == (2, 0):
            raise ValueError("a failed cell")
        return out


def test_a_real_sweep_matches_build_dataset_at_every_event(tmp_path):
    seen = []
    run = Mixed().start(x=multirun([0, 1, 2]), y=multirun([0, 1]), working_dir=str(tmp_path / "d"))

    def check(ev):
        with run._lock:
            got = run.dataset
            want = build_dataset(
                run.spec,
                list(run._results.values()),
                sweep_dir=run.sweep_dir,
                include_status=True,
                status=run._status.copy(),
            )
        same(got, want)
        seen.append(ev.index)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the ragged curve is told once per build
        run.subscribe(check)
        final = run.wait()
    assert len(seen) >= 1 and run.callback_errors == []
    assert run.status == {"pending": 0, "running": 0, "done": 5, "failed": 1, "cancelled": 0, "total": 6}
    assert final["curve"].dims == ("x", "y", "curve_dim0") and final["n"].dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reloaded = MultiRunMetricsWorkflow(working_dir=run.sweep_dir).to_xarray()
    xr.testing.assert_identical(final.drop_vars("status"), reloaded)


# ------------------------------------------------------------------ reload: the compact form


class Cols(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, y: int) -> dict:
        if (x, y) == (1, 1):
            raise ValueError("a failed cell")
        return dict(
            s=10 * x + y,
            f=x / 3,
            b=x > 1,
            t="é" * x,
            mix=x if x % 2 else float(x),  # int in some jobs, float in others
            none=None if x == 0 else x,
            v=np.arange(3.0) * x,
            m=np.ones((2, 2), dtype="int8") * y,
            ragged=np.arange(x + 1),
        )


def same_results(got: list[JobResult], want: list[JobResult]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        for f in fields(JobResult):
            if f.name != "metrics":
                x, y = getattr(a, f.name), getattr(b, f.name)
                assert x == y or (x != x and y != y), (f.name, x, y)
        assert (a.metrics is None) == (b.metrics is None)
        for k in b.metrics or {}:
            x, y = a.metrics[k], b.metrics[k]
            assert type(x) is type(y), (k, x, y)
            if isinstance(y, np.ndarray):
                assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), k
            else:
                assert x == y, (k, x, y)
        assert list(a.metrics or {}) == list(b.metrics or {})


def _reload(d: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wf = MultiRunMetricsWorkflow().load_from_dir(d)
        ds = wf.to_xarray()
    return wf._results, ds, [str(w.message) for w in caught if "mushin_nb:" in str(w.message)]


def _without_columns(d: Path):
    """The reload from the job files alone (the compact form set aside, then put back)."""
    p = d / ".mushin" / _store.COLUMNS
    keep = p.read_bytes()
    p.unlink()
    try:
        return _reload(d)
    finally:
        p.write_bytes(keep)


def _sweep(tmp_path, xs=(0, 1, 2, 3), resume=False) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        wf = Cols()
        try:
            wf.run(
                x=multirun(list(xs)),
                y=multirun([0, 1, 2]),
                working_dir=str(tmp_path / "d"),
                progress=False,
                resume=resume,
            )
        except Exception as e:  # the failed cell
            assert "a failed cell" in str(e)
    d = tmp_path / "d"
    assert _store.save_columns(d, wf.last_run.results, min_records=1)
    return d


def test_the_compact_form_reloads_exactly_what_the_job_files_hold(tmp_path):
    d = _sweep(tmp_path)
    assert _store.read_columns(d) is not None
    fast, ds_fast, w_fast = _reload(d)
    slow, ds_slow, w_slow = _without_columns(d)
    same_results(fast, slow)
    same(ds_fast, ds_slow)
    assert w_fast == w_slow  # the ragged metric, told the same way
    assert ds_fast["mix"].values.tolist()[1][0] == 1.0 and ds_fast["t"].values.tolist()[3][0] == "ééé"


def test_a_fresh_compact_form_is_what_a_reload_reads(tmp_path):
    d = _sweep(tmp_path)
    npz = next(p for p in sorted(d.glob("*/" + _store.RESULT_NPZ)))
    st = npz.stat()
    npz.write_bytes(b"\0" * st.st_size)  # in place: same size and inode ...
    os.utime(npz, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and time: nothing says it changed
    fast, _, warned = _reload(d)
    assert warned == [w for w in warned if "ragged" in w or "shapes" in w]  # no damage seen
    assert not any(_store.is_damaged(r) for r in fast)


def test_a_stale_compact_form_is_not_used_and_damage_is_told_as_without_it(tmp_path):
    d = _sweep(tmp_path)
    # a damaged .npz (its time changes): that cell only, as from the job files alone
    victim = sorted(d.glob("*/" + _store.RESULT_NPZ))[2]
    victim.write_bytes(b"garbage")
    fast, ds_fast, w_fast = _reload(d)
    slow, ds_slow, w_slow = _without_columns(d)
    same_results(fast, slow)
    same(ds_fast, ds_slow)
    assert w_fast == w_slow and any("DamagedResult" in w or "is not an .npz" in w for w in w_fast)
    assert sum(_store.is_damaged(r) for r in fast) == 1
    # lines appended since (a resume adds cells): read from the index after the compact form
    d = _sweep(tmp_path / "b", xs=(0, 1))
    Cols().run(
        x=multirun([0, 1, 2, 3]),
        y=multirun([0, 1, 2]),
        working_dir=str(d),
        resume="force",
        progress=False,
        on_error="ignore",
    )
    cols = _store.read_columns(d)
    assert cols is not None and len(cols.rows) == 6  # the first run's six cells
    n = len((d / ".mushin" / "index.jsonl").read_bytes().splitlines())
    with open(d / ".mushin" / "index.jsonl", "ab") as f:
        f.write(b"not json\n")  # damage after the compact form: told with its line number
    fast, ds_fast, w_fast = _reload(d)
    slow, ds_slow, w_slow = _without_columns(d)
    same_results(fast, slow)
    same(ds_fast, ds_slow)
    assert w_fast == w_slow and any(f"line {n + 1}" in w for w in w_fast), w_fast
    # the index itself changed (a garbled line): the compact form is not used at all
    data = (d / ".mushin" / "index.jsonl").read_bytes()
    (d / ".mushin" / "index.jsonl").write_bytes(b"X" + data[1:])
    assert _store.read_columns(d) is None
    fast, _, w_fast = _reload(d)
    assert any("line 1" in w for w in w_fast)


def test_a_big_enough_sweep_leaves_the_compact_form_and_a_reload_remakes_it(tmp_path):
    class Many(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            return dict(y=x, v=np.full(2, x))

    Many().run(x=multirun(list(range(least_records()))), working_dir=str(tmp_path / "d"), progress=False)
    d = tmp_path / "d"
    cols = _store.read_columns(d)
    assert cols is not None and len(cols.rows) == least_records()
    first, ds, _ = _reload(d)
    (d / ".mushin" / _store.COLUMNS).unlink()
    again, ds2, _ = _reload(d)  # from the job files: and the compact form is written again
    same_results(again, first)
    same(ds2, ds)
    assert _store.read_columns(d) is not None


@pytest.mark.parametrize(
    "values",
    [
        [0.5, 1.0, 2.0],
        [0.1, float("nan")],
        ["linear", "cos", "é"],
        [True, False],
        [2**40, -3],
        [1, "a"],  # mixed: an object coordinate, made as xr.Dataset makes it
        [None, 1.5],
    ],
)
def test_live_coordinates_are_those_build_dataset_makes(values):
    spec = SweepSpec(
        [Param("a", values, [str(v) for v in values], swept=True), Param("b", [1, 2], ["1", "2"], swept=True)]
    )
    live = LiveDataset(spec)
    results = []
    for num, idx in enumerate(np.ndindex(*spec.shape)):
        r = JobResult(
            index=tuple(int(i) for i in idx),
            status="done",
            job_num=num,
            subdir=str(num),
            metrics={"y": float(num), "curve": np.arange(3.0)},
        )
        results.append(r)
        live.add(r)
        status = np.full(spec.shape, "pending", dtype="<U9")
        for done in results:
            status[done.index] = "done"
        same(live.snapshot(), build_dataset(spec, results, include_status=True, status=status))


def test_the_first_live_dataset_does_not_import_dask(tmp_path):
    """xr.Dataset(coords=...) asks whether each coordinate is a dask array, which imports
    dask (~1 s) where it is installed; the live Dataset makes its coordinates without it."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import sys
        from mushin_nb import MultiRunMetricsWorkflow, multirun

        class W(MultiRunMetricsWorkflow):
            @staticmethod
            def task(a: float, s: str) -> dict:
                return dict(y=a, curve=[1.0, 2.0])

        run = W().start(a=multirun([0.5, 1.0]), s=multirun(["p", "q"]), working_dir={str(tmp_path / "s")!r})
        run.wait()
        ds = run.dataset
        print("DASK", "dask" in sys.modules)  # before any use of ds: xarray's own methods import it
        assert ds["y"].values.tolist() == [[0.5, 0.5], [1.0, 1.0]], ds["y"].values
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "DASK False" in out.stdout, out.stdout
