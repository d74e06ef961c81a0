"""Names and values (issue 10, points 4 and 7): every job's result is checked and
written inside the job's failure boundary, metric names never collide in the
Dataset, numpy sweep values give the same coordinates live and reloaded, and a
ragged metric never blocks the others. Real sweeps, real files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mushin_nb import MultiRunMetricsWorkflow, hydra_list, multirun
from mushin_nb._dataset import build_dataset
from mushin_nb._store import ERROR_TXT, INDEX, META_DIR, RESULT_JSON

pytestmark = pytest.mark.usefixtures("cleandir")


def _no_cell_left_open(run) -> None:
    s = run.status
    assert s["running"] == 0 and s["pending"] == 0, s
    assert set(run.dataset["status"].values.ravel()) <= {"done", "failed"}


def _record(run, **params) -> tuple[dict, Path]:
    """The result file of the cell with ``params`` and its job directory."""
    (r,) = [r for r in run.results if run.spec.cell_params(r.index) == params]
    job_dir = run.sweep_dir / r.subdir
    return json.loads((job_dir / RESULT_JSON).read_text(encoding="utf-8")), job_dir


def _build_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if "building the Dataset" in str(w.message)]


# ------------------------------------------------------------------ 1. values


UNSTORABLE = {
    # case: (value, words the message must hold: its type and what to return instead)
    "complex": (lambda: 1 + 2j, ["complex", "z.real and z.imag", "abs(z)"]),
    "np_complex": (lambda: np.complex64(1 + 2j), ["complex64", "z.real and z.imag"]),
    "datetime64": (
        lambda: np.datetime64("2024-01-02T03:04:05.000000000"),
        ["datetime64", "str(t)", "t.astype('datetime64[s]').astype(float)"],
    ),
    "bytes": (lambda: b"\x00ab", ["bytes", "decode it to str"]),
    "complex_array": (lambda: np.ones(3, complex), ["complex128", "a.real and a.imag"]),
    "datetime_array": (
        lambda: np.array(["2024-01-01"], "datetime64[D]").repeat(2),
        ["datetime64", "a.astype(str)"],
    ),
    "bytes_array": (lambda: np.array([b"a", b"b"]), ["|S1", "decode it to str"]),
    "void_array": (lambda: np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), ["its own metric"]),
    "object_array": (lambda: np.array([{"a": 1}, None]), ["Python objects"]),
    "none_in_list": (lambda: [1.0, None], ["Python objects"]),
    "big_int": (lambda: 2**70, ["beyond 64 bits", "float(n)"]),
    "mixed_list": (lambda: [1, "a"], ["mixing strings", "separate metrics"]),
}


class Values(MultiRunMetricsWorkflow):
    @staticmethod
    def task(case: str) -> dict:
        value = 0.5 if case == "ok" else UNSTORABLE[case][0]()
        return dict(good=len(case), v=value)


def test_unstorable_values_are_the_jobs_recorded_failure():
    cases = ["ok", *UNSTORABLE]
    run = Values().start(case=multirun(cases), lr=0.1, working_dir="sweep")
    ds = run.wait()
    _no_cell_left_open(run)
    assert run.status["done"] == 1 and run.status["failed"] == len(UNSTORABLE)
    # the cell that returned storable values is intact
    assert ds["v"].sel(case="ok").item() == 0.5 and ds["good"].sel(case="ok").item() == 2
    assert np.isnan(ds["good"].sel(case="complex").item())  # a failed job stores no metric at all
    by_case = {f.params["case"]: f for f in run.failures}
    assert set(by_case) == set(UNSTORABLE)
    for case, (_, words) in UNSTORABLE.items():
        msg = by_case[case].message
        assert by_case[case].exc_type == "MetricValueError", (case, msg)
        assert "'v'" in msg and f"case={case!r}" in msg, (case, msg)
        for w in words:
            assert w in msg, (case, w, msg)
        rec, job_dir = _record(run, case=case)
        assert rec["status"] == "failed" and rec["scalars"] == {} and rec["arrays"] == []
        assert rec["error"]["message"] == msg
        assert msg in (job_dir / ERROR_TXT).read_text(encoding="utf-8")
    # reloaded, the sweep shows the same
    again = MultiRunMetricsWorkflow(working_dir="sweep")
    assert sorted(r.status for r in again._results) == sorted(run.dataset["status"].values.tolist())
    xr.testing.assert_identical(again.to_xarray(), ds.drop_vars("status"))


class Blocked(MultiRunMetricsWorkflow):
    """A job whose result file cannot be written (its path is a directory): the
    same as a full disk for the writer."""

    @staticmethod
    def task(x: int) -> dict:
        if x == 1:
            Path(RESULT_JSON).mkdir()  # the job's directory is the current directory
        if x == 2:
            Path("mushin_result.npz").mkdir()
        return dict(y=x, curve=np.arange(3) * x)


def test_a_result_that_cannot_be_written_is_the_jobs_failure_and_never_escapes():
    run = Blocked().start(x=multirun([0, 1, 2, 3]), working_dir="sweep")
    ds = run.wait()
    _no_cell_left_open(run)
    assert ds["status"].values.tolist() == ["done", "failed", "failed", "done"]
    assert ds["y"].sel(x=[0, 3]).values.tolist() == [0, 3]
    by_x = {f.params["x"]: f for f in run.failures}
    # the array file could not be written: the failure record could, and says why
    rec, job_dir = _record(run, x=2)
    assert rec["status"] == "failed" and by_x[2].exc_type == "IsADirectoryError"
    assert (job_dir / ERROR_TXT).exists()
    # not even the failure record could be written: logged in the job's log, nothing raised
    assert by_x[1].exc_type == "IsADirectoryError"
    (r1,) = [r for r in run.results if r.index == (1,)]
    log_text = "".join(p.read_text() for p in (run.sweep_dir / r1.subdir).glob("*.log"))
    assert "could not write the failed record of the job with x=1" in log_text
    (run.sweep_dir / r1.subdir / RESULT_JSON).rmdir()  # the disk has room again
    again = MultiRunMetricsWorkflow(working_dir="sweep")
    assert sorted((r.index[0], r.status) for r in again._results) == [(0, "done"), (2, "failed"), (3, "done")]
    assert again.to_xarray()["y"].sel(x=[0, 3]).values.tolist() == [0.0, 3.0]


# ------------------------------------------------------------------ 2. names


NAME_CASES = {
    # case: (returned dict, words the message must hold)
    "swept": (lambda: {"case": 1}, ["'case'", "swept parameter", "Rename"]),
    "fixed": (lambda: {"lr": 1}, ["'lr'", "parameter 'lr'", "Rename"]),
    "status": (lambda: {"status": "ok"}, ["'status'", "status", "Rename"]),
    "job_dir": (lambda: {"job_dir": "d"}, ["'job_dir'", "target_job_dirs", "Rename"]),
    "working_subdir": (lambda: {"working_subdir": "d"}, ["'working_subdir'", "Rename"]),
    "dim": (lambda: {"a": np.zeros(2), "a_dim0": 1.0}, ["'a_dim0'", "array metric 'a'", "Rename"]),
    "text": (lambda: {1: 1.0, "1": 2.0}, ["1 (int)", "'1' (str)", "Rename one"]),
}


class Names(MultiRunMetricsWorkflow):
    @staticmethod
    def task(case: str, lr: float) -> dict:
        if case == "ok":
            return dict(acc=lr, a=np.ones(2))
        return NAME_CASES[case][0]()


def test_metric_names_that_collide_fail_the_first_job_that_returns_them():
    run = Names().start(case=multirun(["ok", *NAME_CASES]), lr=0.25, working_dir="sweep")
    ds = run.wait()
    _no_cell_left_open(run)
    by_case = {f.params["case"]: f for f in run.failures}
    assert set(by_case) == set(NAME_CASES)
    for case, (_, words) in NAME_CASES.items():
        f = by_case[case]
        assert f.exc_type == "MetricNameError" and f"case={case!r}" in f.message, (case, f.message)
        for w in words:
            assert w in f.message, (case, w, f.message)
        rec, job_dir = _record(run, case=case)
        assert rec["status"] == "failed" and (job_dir / ERROR_TXT).exists()
    # the live status variable is mushin_nb's, never a metric's
    assert ds["status"].sel(case="status").item() == "failed"
    assert ds["acc"].sel(case="ok").item() == 0.25 and ds["a"].sel(case="ok").values.tolist() == [1, 1]
    reloaded = MultiRunMetricsWorkflow(working_dir="sweep").to_xarray()
    assert set(reloaded.data_vars) == {"acc", "a"}


class Upstream(MultiRunMetricsWorkflow):
    @staticmethod
    def task(lr: float) -> dict:
        return dict(acc=lr)


class Downstream(MultiRunMetricsWorkflow):
    @staticmethod
    def task(job_dir: str) -> dict:
        return dict(lr=1.0, other=2.0)  # 'lr' is a coordinate along job_dir


def test_a_metric_named_like_an_upstream_parameter_fails_instead_of_being_replaced():
    up = Upstream()
    up.run(lr=multirun([0.1, 0.2]), working_dir="up", progress=False)
    run = Downstream().start(target_job_dirs=up.multirun_working_dirs, working_dir="down")
    run.wait()
    _no_cell_left_open(run)
    assert run.status["failed"] == 2
    msg = run.failures[0].message
    assert "'lr'" in msg and "job_dir=" in msg and "Rename" in msg


class Older(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        return dict(ZZX=10.0 * x, ZZS="s", a=np.zeros(2), ZZD=2.0, ZZW="w", y=x)


def test_records_with_colliding_names_from_an_older_sweep_still_load(tmp_path):
    Older().run(x=multirun([1, 2]), working_dir="sweep", progress=False)
    # what an older version, which did not refuse these names, left on disk
    renames = {"ZZX": "x", "ZZS": "status", "ZZD": "a_dim0", "ZZW": "working_subdir"}
    files = [*Path("sweep").glob(f"**/{RESULT_JSON}"), Path("sweep") / META_DIR / INDEX]
    for p in files:
        text = p.read_text(encoding="utf-8")
        for old, new in renames.items():
            text = text.replace(f'"{old}"', f'"{new}"')
        p.write_text(text, encoding="utf-8")

    wf = MultiRunMetricsWorkflow(working_dir="sweep")
    ds, warned = _build_warnings(lambda: wf.to_xarray(include_working_subdirs_as_data_var=True))
    (w,) = warned
    for name in ["'x'", "'a_dim0'", "'working_subdir'"]:
        assert name in str(w.message)
    assert ds["x_metric"].values.tolist() == [10.0, 20.0] and ds["x"].values.tolist() == [1, 2]
    assert ds["a_dim0_metric"].values.tolist() == [2.0, 2.0]
    assert ds["working_subdir_metric"].values.tolist() == ["w", "w"]
    assert ds["working_subdir"].values[0].endswith(wf._results[0].subdir)
    assert ds["status"].values.tolist() == ["s", "s"]  # no status variable here: no collision
    assert ds["y"].values.tolist() == [1, 2]
    # with mushin_nb's status variable (as a live run shows it), the metric moves aside
    live, warned = _build_warnings(lambda: build_dataset(wf._spec, wf._results, include_status=True))
    assert len(warned) == 1 and "'status'" in str(warned[0].message)
    assert live["status"].values.tolist() == ["done", "done"]
    assert live["status_metric"].values.tolist() == ["s", "s"]


# ------------------------------------------------------------------ 3. numpy sweep values


class Echo(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x, n, b, s, k, f, h) -> dict:
        return dict(types=",".join(type(v).__name__ for v in (x, n, b, s, k, f)), h_text=str(h))


def test_numpy_sweep_values_give_the_same_coordinates_live_and_reloaded():
    run = Echo().start(
        x=multirun([np.float64(0.1), np.float32(0.5)]),
        n=multirun(np.arange(2)),  # np.int64 elements
        b=multirun([np.bool_(True), np.bool_(False)]),
        s=multirun([np.str_("a"), np.str_("b")]),
        k=np.int64(3),
        f=np.float64(0.25),
        h=hydra_list(np.arange(2)),
        working_dir="sweep",
    )
    live = run.wait()
    assert run.status["done"] == 16, run.failures
    reloaded = MultiRunMetricsWorkflow(working_dir="sweep").to_xarray()
    xr.testing.assert_identical(live.coords.to_dataset(), reloaded.coords.to_dataset())
    assert {c: live[c].dtype.kind for c in ["x", "n", "b", "s"]} == {"x": "f", "n": "i", "b": "b", "s": "U"}
    assert live["x"].values.tolist() == [0.1, float(np.float32(0.5))]
    assert live.attrs == reloaded.attrs == {"k": 3, "f": 0.25, "h": "[0, 1]"}
    assert type(reloaded.attrs["k"]) is int
    assert set(live["types"].values.ravel()) == {"float,int,bool,str,int,float"}
    assert set(live["h_text"].values.ravel()) == {"[0, 1]"}
    xr.testing.assert_identical(live.drop_vars("status"), reloaded)


# ------------------------------------------------------------------ 4. ragged metrics


class Ragged(MultiRunMetricsWorkflow):
    @staticmethod
    def task(n: int) -> dict:
        return dict(
            curve=np.arange(n),  # (2,) / (3,): padded
            grid=np.ones((2, n)),  # (2, 2) / (2, 3): padded
            w=np.zeros(n) if n == 2 else 1.0,  # (2,) / (): left out
            s=float(n),
            label=["ab", "c", "d"][:n],  # text: padded with ""
        )


def test_a_ragged_metric_never_blocks_the_other_metrics():
    run = Ragged().start(n=multirun([2, 3]), working_dir="sweep")
    run.join()
    assert run.status["done"] == 2
    for build in (lambda: run.dataset, lambda: MultiRunMetricsWorkflow(working_dir="sweep").to_xarray()):
        ds, warned = _build_warnings(build)
        assert len(warned) == 1  # once per Dataset build, naming each metric, its shapes and a cell
        msg = str(warned[0].message)
        assert "'curve'" in msg and "(2,) (e.g. at n=2)" in msg and "(3,) (e.g. at n=3)" in msg
        assert "'grid'" in msg and "(2, 2) (e.g. at n=2)" in msg and "padded to (2, 3)" in msg
        assert "'w'" in msg and "() (e.g. at n=3)" in msg and "left out" in msg
        assert "w" not in ds.data_vars
        assert ds["s"].values.tolist() == [2.0, 3.0]
        np.testing.assert_array_equal(ds["curve"].values, [[0, 1, np.nan], [0, 1, 2]])
        assert ds["curve"].dims == ("n", "curve_dim0") and ds["curve_dim0"].values.tolist() == [0, 1, 2]
        np.testing.assert_array_equal(ds["grid"].sel(n=2).values, [[1, 1, np.nan]] * 2)
        assert ds["label"].values.tolist() == [["ab", "c", ""], ["ab", "c", "d"]]
    _, warned = _build_warnings(lambda: run.dataset)
    assert warned == []  # the live Dataset is built once while nothing changes: warned once
    _no_cell_left_open(run)
