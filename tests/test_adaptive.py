"""Adaptive sweeps (issue 15): ``adaptive_range(...)`` values sampled by ``adaptive``'s
learners, run as rounds of real Hydra sweeps into one directory.

Every test runs real sweeps (in-process, and joblib workers for one) and reads what
the jobs left on disk; nothing is mocked."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("adaptive")

from mushin_nb import (  # noqa: E402
    AdaptiveRun,
    MultiRunMetricsWorkflow,
    RobustnessCurve,
    SweepError,
    adaptive_range,
    load_netcdf,
    multirun,
    save_netcdf,
)


def knee(x: float) -> float:
    """An accuracy-like curve: flat, a sharp drop at 0.4, flat."""
    return 0.5 + 0.5 / (1.0 + math.exp((x - 0.4) / 0.02))


class Knee(RobustnessCurve):
    @staticmethod
    def task(epsilon: float, shift: float = 0.0) -> dict:
        return dict(accuracy=knee(epsilon - shift))


class Flaky(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: float, fail_above: float) -> dict:
        if x > fail_above:
            raise ValueError(f"too big: {x}")
        return dict(y=knee(x))


class TwoD(MultiRunMetricsWorkflow):
    @staticmethod
    def task(a: float, b: float) -> dict:
        return dict(z=float(a + b > 1.0))


class TwoMetrics(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: float) -> dict:
        return dict(y=x, y2=x * x)


def records(d: Path) -> list[dict]:
    lines = (d / ".mushin" / "index.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def result_files(d: Path) -> list[Path]:
    return sorted(d.rglob("mushin_result.json"))


# ------------------------------------------------------------------ one parameter


def test_robustness_curve_samples_where_it_bends_and_reloads_exactly(tmp_path):
    wf = Knee()
    wf.run(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=16, batch_size=4),
        working_dir=str(tmp_path),
        progress=False,
    )
    ds = wf.to_xarray()
    eps = ds["epsilon"].values
    assert len(eps) == 16 and (np.diff(eps) > 0).all() and eps[0] == 0.0 and eps[-1] == 1.0
    # the knee (0.3..0.5) holds far more points than its share (a fifth) of the range
    assert ((eps > 0.3) & (eps < 0.5)).sum() >= 8
    assert np.allclose(ds["accuracy"].values, [knee(e) for e in eps])
    # one job per point, each with its job directory and stored result; four rounds, one sweep each
    assert len(result_files(tmp_path)) == 16
    assert sorted(r["status"] for r in records(tmp_path)) == ["done"] * 16
    manifest = json.loads((tmp_path / ".mushin" / "manifest.json").read_text())
    assert len(manifest["runs"]) == 4 == wf.last_run.rounds  # type: ignore[union-attr]
    # load_from_dir rebuilds the same Dataset; NetCDF round-trips it exactly
    again = Knee(working_dir=tmp_path).to_xarray()
    assert again.identical(ds)
    save_netcdf(ds, tmp_path / "curve.nc")
    assert load_netcdf(tmp_path / "curve.nc").identical(ds)


def test_one_curve_per_combination_on_a_full_grid(tmp_path):
    wf = Knee()
    run = wf.start(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=10, batch_size=3),
        shift=multirun([0.0, 0.3]),
        working_dir=str(tmp_path),
    )
    assert isinstance(run, AdaptiveRun)
    ds = run.wait()
    assert list(ds["accuracy"].dims) == ["shift", "epsilon"]
    assert ds.sizes["epsilon"] == 10 and (ds["status"] == "done").all()
    # each point ran for both shifts (20 jobs) and each learner was told all 10 of its points
    assert len(result_files(tmp_path)) == 20
    assert sorted(len(lrn.data) for lrn in run.learners.values()) == [10, 10]
    for s in (0.0, 0.3):
        assert np.allclose(ds["accuracy"].sel(shift=s).values, [knee(e - s) for e in ds["epsilon"].values])
    assert wf.to_xarray().identical(ds.drop_vars("status"))


def test_loss_goal_and_duration_goal_stop_the_run(tmp_path):
    run = Knee().start(
        epsilon=adaptive_range(0.0, 1.0, loss_goal=0.2, batch_size=2), working_dir=str(tmp_path / "a")
    )
    run.wait()
    assert run.stop_reason is not None and run.stop_reason.startswith("loss_goal=0.2 reached")
    assert run.loss <= 0.2 and run.npoints == run.dataset.sizes["epsilon"]

    run = Knee().start(
        epsilon=adaptive_range(0.0, 1.0, duration_goal=1e-6, batch_size=3), working_dir=str(tmp_path / "b")
    )
    run.wait()
    assert run.rounds == 1 and run.npoints == 3 and run.stop_reason == "duration_goal=1e-06 s reached"


def test_live_handle_events_and_growing_dataset(tmp_path):
    sizes: list[int] = []
    events = []
    run = Knee().start(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=9, batch_size=3), working_dir=str(tmp_path)
    )
    run.subscribe(events.append)
    run.subscribe(lambda ev: sizes.append(run.dataset.sizes["epsilon"]))
    ds = run.wait()
    assert run.done and run.error is None and run.rounds == 3
    assert len(events) + 3 >= 9 and all(e.status == "done" for e in events)  # the first round may end first
    assert sizes == sorted(sizes) and ds.sizes["epsilon"] == 9
    assert run.status == {"pending": 0, "running": 0, "done": 9, "failed": 0, "cancelled": 0, "total": 9}
    assert "AdaptiveRun" in repr(run) and "9 points in 3 rounds" in repr(run)


# ------------------------------------------------------------------ failures, cancel, resume


def test_a_failed_point_is_kept_once_and_the_learners_go_on(tmp_path):
    wf = Flaky()
    with pytest.raises(SweepError) as info:
        wf.run(
            x=adaptive_range(0.0, 1.0, npoints_goal=10, batch_size=3),
            fail_above=0.9,
            working_dir=str(tmp_path),
            progress=False,
        )
    err = info.value
    assert "x=1.0" in str(err) and "ValueError" in str(err)
    ds = err.dataset
    assert ds.sizes["x"] == 10  # the run went on to its goal after the failure
    failed = ds["x"].values[(ds["status"] == "failed").values].tolist()
    assert failed and all(x > 0.9 for x in failed)
    # each failed point ran once: never again in a later round
    recs = records(tmp_path)
    assert len(recs) == 10 and sum(r["status"] == "failed" for r in recs) == len(failed)
    assert wf.to_xarray()["y"].isnull().sum() == len(failed)


def test_on_error_stop_ends_after_the_round_with_the_failure(tmp_path):
    run = Flaky().start(
        x=adaptive_range(0.0, 1.0, npoints_goal=12, batch_size=2),
        fail_above=0.9,
        on_error="stop",
        working_dir=str(tmp_path),
    )
    with pytest.raises(SweepError):
        run.wait(raise_failures=True)
    assert run.rounds == 1 and run.stop_reason == "a job failed (on_error='stop')"


def test_cancel_keeps_every_point_and_resume_goes_on_without_rerunning(tmp_path):
    gate = threading.Event()

    class Gated(RobustnessCurve):
        @staticmethod
        def task(epsilon: float) -> dict:
            if epsilon != 0.0:
                gate.wait(10)
            return dict(accuracy=knee(epsilon))

    run = Gated().start(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=12, batch_size=4), working_dir=str(tmp_path)
    )
    while run.status["done"] < 1:
        run.join(0.02)
    run.cancel()  # during the first round: a running job ends, no new job or round starts
    gate.set()
    ds = run.wait()
    assert run.stop_reason == "cancelled" and run.rounds == 1
    done = int((ds["status"] == "done").sum())
    assert 1 <= done <= 2 and int((ds["status"] == "cancelled").sum()) == 4 - done
    before = {r["subdir"] for r in records(tmp_path) if r["status"] == "done"}

    wf = Gated()
    wf.run(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=12, batch_size=4),
        working_dir=str(tmp_path),
        resume=True,
        progress=False,
    )
    ds2 = wf.to_xarray()
    assert ds2.sizes["epsilon"] == 12 and not ds2["accuracy"].isnull().any()
    # the finished points were told to the learners, not run again; the cancelled ones ran
    done_recs = [r for r in records(tmp_path) if r["status"] == "done"]
    assert len(done_recs) == 12 and before <= {r["subdir"] for r in done_recs}
    assert set(ds["epsilon"].values.tolist()) <= set(ds2["epsilon"].values.tolist())


def test_ctrl_c_interrupts_keeps_the_points_and_resume_goes_on(tmp_path):
    import _thread
    import time

    pressed = threading.Event()

    class Slow(RobustnessCurve):
        @staticmethod
        def task(epsilon: float) -> dict:
            t = time.monotonic()
            while pressed.is_set() and time.monotonic() - t < 5:  # the job Ctrl-C stops
                time.sleep(0.01)
            return dict(accuracy=knee(epsilon))

    wf = Slow()
    hits = []

    def ctrl_c(ev) -> None:  # Ctrl-C in the notebook, once a job of the second round is done
        hits.append(ev)
        if len(hits) == 5:
            pressed.set()
            _thread.interrupt_main()

    from mushin_nb._execution import SweepRun

    real = SweepRun.subscribe
    with pytest.MonkeyPatch.context() as mp:  # every round's sweep reports to ctrl_c
        mp.setattr(SweepRun, "subscribe", lambda self, cb: (real(self, ctrl_c), real(self, cb))[1])
        with pytest.raises(KeyboardInterrupt):
            wf.run(
                epsilon=adaptive_range(0.0, 1.0, npoints_goal=16, batch_size=4),
                working_dir=str(tmp_path),
                progress=False,
            )
    run = wf.last_run
    assert isinstance(run, AdaptiveRun) and run.done and run.stop_reason == "cancelled"
    ds = wf.to_xarray()
    kept = int(ds["accuracy"].notnull().sum())
    assert kept == 5 and run.rounds == 2 and int((ds["accuracy"].isnull()).sum()) == 3
    pressed.clear()
    wf.run(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=16, batch_size=4),
        working_dir=str(tmp_path),
        resume=True,
        progress=False,
    )
    assert wf.to_xarray()["accuracy"].notnull().sum() == 16
    assert sum(r["status"] == "done" for r in records(tmp_path)) == 16  # nothing ran twice


def test_resume_from_a_fixed_grid_refines_it(tmp_path):
    wf = Knee()
    wf.run(epsilon=[0.0, 0.25, 0.5, 0.75, 1.0], working_dir=str(tmp_path), progress=False)
    run = wf.start(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=9, batch_size=2), working_dir=str(tmp_path), resume=True
    )
    ds = run.wait()
    eps = ds["epsilon"].values.tolist()
    assert len(eps) == 9 and {0.0, 0.25, 0.5, 0.75, 1.0} <= set(eps)
    assert len(records(tmp_path)) == 9  # 5 from the grid, 4 new: none ran twice
    assert sorted(len(lrn.data) for lrn in run.learners.values()) == [9]


def test_resume_with_narrower_bounds_refines_inside_and_keeps_the_rest(tmp_path):
    wf = Knee()
    wf.run(epsilon=[0.0, 0.25, 0.5, 0.75, 1.0], working_dir=str(tmp_path), progress=False)
    run = wf.start(
        epsilon=adaptive_range(0.25, 0.5, npoints_goal=6, batch_size=4),
        working_dir=str(tmp_path),
        resume=True,
    )
    ds = run.wait()
    eps = ds["epsilon"].values.tolist()
    new = sorted(set(eps) - {0.0, 0.25, 0.5, 0.75, 1.0})
    assert len(eps) == 9 and len(new) == 4 and all(0.25 < e < 0.5 for e in new)
    assert (ds["status"] == "done").all() and len(records(tmp_path)) == 9
    assert run.npoints == 6 and sorted(len(lrn.data) for lrn in run.learners.values()) == [6]


# ------------------------------------------------------------------ two parameters, launchers


def test_two_adaptive_parameters_run_only_the_sampled_pairs(tmp_path):
    wf = TwoD()
    run = wf.start(
        a=adaptive_range(0.0, 1.0, npoints_goal=12, batch_size=4),
        b=adaptive_range(0.0, 1.0),
        working_dir=str(tmp_path),
    )
    ds = run.wait()
    assert run.npoints == 12 and (ds["status"] == "done").sum() == 12
    assert len(records(tmp_path)) == 12  # the other cells of the a x b grid never ran
    assert (np.diff(ds["a"].values) > 0).all() and (np.diff(ds["b"].values) > 0).all()
    done = ds["status"] == "done"
    assert ds["z"].where(done).notnull().sum() == 12 and ds["z"].where(~done).isnull().all()
    again = TwoD(working_dir=tmp_path).to_xarray()
    assert again.identical(ds.drop_vars("status"))


def test_joblib_workers_run_the_rounds(tmp_path):
    run = Knee().start(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=6),
        working_dir=str(tmp_path),
        launcher="joblib",
        jobs=2,
    )
    ds = run.wait()
    assert ds.sizes["epsilon"] == 6 and (ds["status"] == "done").all()
    assert run.settings.batch_size == 4  # the default: the larger of 4 and jobs
    assert len(result_files(tmp_path)) == 6


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(low=1.0, high=0.0), "low must be smaller than high"),
        (dict(low=0.0, high=float("nan")), "high=nan; give a finite number"),
        (dict(low=0.0, high=1.0, npoints_goal=1), "npoints_goal=1"),
        (dict(low=0.0, high=1.0, batch_size=0), "batch_size=0"),
        (dict(low=0.0, high=1.0, loss="wiggly"), "loss='wiggly' is not a loss it knows"),
        (dict(low=0.0, high=1.0, loss_goal=-1), "loss_goal=-1"),
    ],
)
def test_adaptive_range_refuses_bad_settings(kw, fragment):
    with pytest.raises(ValueError, match="adaptive_range") as info:
        adaptive_range(**kw)
    assert fragment in str(info.value)


def test_sweeps_that_cannot_be_adaptive_are_refused_before_anything_runs(tmp_path):
    r = adaptive_range(0.0, 1.0)
    with pytest.raises(ValueError, match="one or two parameters"):
        TwoD().start(a=r, b=r, c=r, working_dir=str(tmp_path / "a"))
    with pytest.raises(ValueError, match=r"batch_size=3\) disagree"):
        TwoD().start(
            a=adaptive_range(0.0, 1.0, batch_size=2),
            b=adaptive_range(0.0, 1.0, batch_size=3),
            working_dir=str(tmp_path),
        )
    with pytest.raises(ValueError, match="drop sweeper"):
        Knee().start(epsilon=r, sweeper="basic", working_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="'curvature' is a loss for one parameter"):
        TwoD().start(a=adaptive_range(0.0, 1.0, loss="curvature"), b=r, working_dir=str(tmp_path / "d"))
    with pytest.raises(FileNotFoundError, match="resume=True"):
        Knee().start(epsilon=r, working_dir=str(tmp_path / "e"), resume=True)
    assert not any((tmp_path / n).exists() for n in "acde")  # nothing was written


def test_several_metrics_need_one_named(tmp_path):
    run = TwoMetrics().start(
        x=adaptive_range(0.0, 1.0, npoints_goal=6, batch_size=3), working_dir=str(tmp_path)
    )
    with pytest.raises(ValueError, match=r"metric='<name>'") as info:
        run.wait()
    assert "'y', 'y2'" in str(info.value) and "job with x=" in str(info.value)
    assert run.rounds == 1 and (run.dataset["status"] == "done").sum() == 3  # the first round is kept
    run = TwoMetrics().start(
        x=adaptive_range(0.0, 1.0, npoints_goal=6, batch_size=3, metric="y2"),
        working_dir=str(tmp_path),
        resume=True,
    )
    ds = run.wait()
    assert ds.sizes["x"] == 6 and len(records(tmp_path)) == 6


def test_the_adaptive_spelling_of_the_magic_and_the_panel():
    from mushin_nb._adaptive import adaptive_override

    name, r = adaptive_override("+epsilon=adaptive(0, 2, npoints_goal=12, loss='uniform', metric=\"acc\")")
    assert name == "epsilon" and (r.low, r.high, r.npoints_goal, r.loss, r.metric) == (
        0.0,
        2.0,
        12,
        "uniform",
        "acc",
    )
    assert adaptive_override("epsilon=0,1") is None and adaptive_override("x=adaptive_thing(1)") is None
    with pytest.raises(
        ValueError, match=r"unexpected keyword argument 'npoints'.*e\.g\. x=adaptive\(0\.0, 1\.0"
    ):
        adaptive_override("x=adaptive(0, 1, npoints=3)")
    with pytest.raises(ValueError, match=r"x=adaptive\(0, y\): give the bounds"):
        adaptive_override("x=adaptive(0, y)")
    with pytest.raises(ValueError, match="low must be smaller than high"):
        adaptive_override("x=adaptive(1, 0)")


# ------------------------------------------------------------------ the magic


CURVE_CELL = """
import math

def task(epsilon: float) -> dict:
    return dict(accuracy=0.5 + 0.5 / (1.0 + math.exp((epsilon - 0.4) / 0.02)))
"""


@pytest.fixture()
def magic_cell(tmp_path, monkeypatch):
    from _ipy import shell

    ip = shell()
    monkeypatch.chdir(tmp_path)
    for k in ("ds", "ds_run"):
        ip.user_ns.pop(k, None)

    def run(line: str, body: str = CURVE_CELL):
        res = ip.run_cell(f"%%mushin_sweep {line}\n{body}")
        return res, ip.user_ns

    return run


@pytest.mark.parametrize("view", ["--no-view", ""])
def test_magic_runs_an_adaptive_sweep(magic_cell, tmp_path, view):
    res, ns = magic_cell(
        f"epsilon=adaptive(0,1,npoints_goal=8,batch_size=4) -o ds {view} -d {tmp_path / 'sw'}"
    )
    assert res.success, res.error_in_exec
    ds, run = ns["ds"], ns["ds_run"]
    assert isinstance(run, AdaptiveRun) and run.rounds == 2 and run.done
    assert ds.sizes["epsilon"] == 8 and (ds["status"] == "done").all()
    assert (np.diff(ds["epsilon"].values) > 0).all()
    assert len(result_files(tmp_path / "sw")) == 8


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("epsilon=adaptive(0) --no-view", "give the bounds"),
        ("epsilon=adaptive(0,1,npoints=3) --no-view", "unexpected keyword argument 'npoints'"),
        ("epsilon=adaptive(0,1) epsilon=0.5 --no-view", "'epsilon' is given twice"),
        ("epsilon=adaptive(0,1) --panel", "--panel with epsilon=adaptive(...)"),
        ("eps=adaptive(0,1) --no-view", "eps"),
    ],
)
def test_magic_refuses_bad_adaptive_lines(magic_cell, tmp_path, line, fragment):
    res, _ = magic_cell(f"{line} -d {tmp_path / 'sw'}")
    assert res.error_in_exec is not None and fragment in str(res.error_in_exec)
    assert not (tmp_path / "sw").exists()  # nothing started or written


# ------------------------------------------------------------------ the robustness panel


def test_panel_refines_adaptively_inside_the_interval(tmp_path):
    pytest.importorskip("panel")
    p = Knee().panel(
        epsilon=[0.0, 0.25, 0.5, 0.75, 1.0], shift=[0.0, 0.1], working_dir=str(tmp_path / "s"), interval=None
    )
    p.run_button.clicks += 1
    p.wait(60)
    p.refine_start, p.refine_stop, p.refine_count = 0.25, 0.75, 4
    p.refine_adaptive_button.clicks += 1
    ds = p.wait(60)
    run = p.run
    assert isinstance(run, AdaptiveRun) and run.done and "refused" not in p.message.lower()
    eps = ds["epsilon"].values.tolist()
    new = sorted(set(eps) - {0.0, 0.25, 0.5, 0.75, 1.0})
    assert len(new) == 4 and all(0.25 < e < 0.75 for e in new)  # where the knee is, none outside
    assert (ds["status"] == "done").all() and len(run.learners) == 2
    assert sum(r["status"] == "done" for r in records(tmp_path / "s")) == 2 * 9  # nothing ran twice
    assert p.pickers["epsilon"].values == eps  # the picker took the new grid
    p.refine_log = True
    assert p.refine_adaptively() is None and "linear scale" in p.message


def test_save_keeps_a_netcdf_file_of_every_round(tmp_path):
    run = Knee().start(
        epsilon=adaptive_range(0.0, 1.0, npoints_goal=12, batch_size=4), working_dir=str(tmp_path)
    )
    path = run.save(tmp_path / "live.nc")
    seen = []
    run.subscribe(lambda ev: seen.append(load_netcdf(path).sizes["epsilon"]))
    ds = run.wait()
    assert run.rounds == 3 and max(seen) <= 12 and seen == sorted(seen)
    assert load_netcdf(path).identical(ds)  # final: the whole adaptive Dataset
