"""Where rai mushin breaks, mushin_nb does better: each point of issue 2 §3."""

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hydra_zen import make_config

from mushin_nb import MultiRunMetricsWorkflow, RobustnessCurve, SweepError, hydra_list, multirun

pytestmark = pytest.mark.usefixtures("cleandir")


class Echo(MultiRunMetricsWorkflow):
    """Returns its parameter back, so the Dataset shows what the task received."""

    @staticmethod
    def task(x) -> dict:
        return dict(got=str(x), kind=type(x).__name__)


class Grid(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, y: int) -> dict:
        return dict(xy=10 * x + y)


# ---------------------------------------------------------------- a. persistence


def test_results_persisted_without_metrics_file_in_safe_formats():
    class Arr(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            import torch

            return dict(s=x, name=f"n{x}", vec=np.arange(3) * x, t=torch.ones(2) * x, lst=[x, x + 1])

    wf = Arr()
    wf.run(x=multirun([1, 2]), working_dir="d", progress=False)
    for d in wf.multirun_working_dirs:
        rec = json.loads((d / "mushin_result.json").read_text())
        assert rec["status"] == "done" and rec["scalars"]["name"].startswith("n")
        with np.load(d / "mushin_result.npz", allow_pickle=False) as z:
            assert set(z.files) == {"vec", "t", "lst"}
    manifest = json.loads(Path("d/.mushin/manifest.json").read_text())
    assert manifest["spec"]["params"][0]["values"] == [1, 2]
    assert manifest["workflow"].endswith("Arr")
    loaded = MultiRunMetricsWorkflow().load_from_dir("d").to_xarray()
    xr.testing.assert_identical(loaded, wf.to_xarray())
    assert loaded["t"].dims == ("x", "t_dim0")


@pytest.mark.parametrize(
    "values",
    [
        ["a,b", "c"],
        ["1", "2"],
        ["true", "null", "None"],
        ["it's", 'say "hi"', "back\\slash", "${oc.env:HOME}", "[1, 2]", "{a: 1}", "ünï ☃"],
    ],
)
def test_string_values_round_trip_exactly(values):
    wf = Echo()
    wf.run(x=multirun(values), working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert ds["x"].values.tolist() == values
    assert ds["got"].values.tolist() == values  # what the task received
    assert set(ds["kind"].values.tolist()) == {"str"}
    again = MultiRunMetricsWorkflow().load_from_dir("d").to_xarray()
    xr.testing.assert_identical(again, ds)
    assert again["x"].values.tolist() == values


def test_none_in_multirun_is_null_and_fixed_strings_stay_strings():
    class T(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x, tag, flag) -> dict:
            return dict(is_none=x is None, tag_type=type(tag).__name__, flag_type=type(flag).__name__)

    wf = T()
    wf.run(x=multirun([None, 1]), tag="a,b", flag="true", working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert ds["is_none"].values.tolist() == [True, False]
    assert set(ds["tag_type"].values.tolist()) == {"str"}
    assert set(ds["flag_type"].values.tolist()) == {"str"}
    assert ds.attrs == {"tag": "a,b", "flag": "true"}
    assert wf.multirun_task_overrides == {"x": [None, 1], "tag": "a,b", "flag": "true"}


def test_range_sweep_and_dict_values():
    class T(MultiRunMetricsWorkflow):
        @staticmethod
        def task(n: int, opts: dict) -> dict:
            return dict(total=n + opts["a"] + len(opts["b"]))

    wf = T()
    wf.run(n=multirun(range(4)), opts={"a": 10, "b": "x,y"}, working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert ds["n"].values.tolist() == [0, 1, 2, 3]
    assert ds["total"].values.tolist() == [13, 14, 15, 16]
    assert ds.attrs["opts"] == {"a": 10, "b": "x,y"}
    xr.testing.assert_identical(MultiRunMetricsWorkflow(working_dir="d").to_xarray(), ds)


def test_range_string_in_overrides_and_robustness_curve():
    class R(RobustnessCurve):
        @staticmethod
        def task(epsilon: float) -> dict:
            return dict(acc=1 - epsilon)

    wf = R()
    wf.run(epsilon="range(0,1,0.25)", working_dir="d", progress=False)
    assert wf.to_xarray()["epsilon"].values.tolist() == [0.0, 0.25, 0.5, 0.75]
    wf.run(epsilon=0.5, working_dir="e", progress=False)
    assert wf.to_xarray().sizes == {"epsilon": 1}
    wf2 = Grid()
    wf2.run(overrides=["+x=range(2)", "+y=choice(5,6)"], working_dir="f", progress=False)
    assert wf2.to_xarray()["xy"].values.tolist() == [[5, 6], [15, 16]]


def test_task_saving_its_own_file_lands_in_job_dir_whatever_version_base():
    class Saver(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            Path("own.json").write_text(json.dumps({"v": x}))
            return dict(v=x)

    for vb in ["1.1", "1.3", None]:
        wf = Saver()
        wf.run(x=multirun([1, 2]), working_dir=f"d{vb}", version_base=vb, progress=False)
        for d, x in zip(wf.multirun_working_dirs, [1, 2]):
            assert json.loads((d / "own.json").read_text()) == {"v": x}
        assert not Path("own.json").exists()
        assert wf.to_xarray(metrics_filename="own.json")["v"].values.tolist() == [1, 2]


# ---------------------------------------------------------------- b. by value, not order


def test_dataset_is_built_by_values_for_any_job_order():
    import hydra_plugins.mushin_test_plugins.reverse_sweeper  # noqa: F401

    ref = Grid()
    ref.run(x=multirun([1, 2, 3]), y=multirun([0, 5]), working_dir="a", progress=False)
    rev = Grid()
    rev.run(
        x=multirun([1, 2, 3]),
        y=multirun([0, 5]),
        working_dir="b",
        sweeper="mushin_test_reverse",
        progress=False,
    )
    assert [int(j.hydra_cfg.hydra.job.num) for j in rev.jobs] == list(range(6))
    xr.testing.assert_identical(ref.to_xarray(), rev.to_xarray())
    batched = Grid()
    batched.run(
        x=multirun([1, 2, 3]),
        y=multirun([0, 5]),
        working_dir="c",
        overrides=["hydra.sweeper.max_batch_size=4"],
        progress=False,
    )
    assert len(batched.jobs) == 6
    xr.testing.assert_identical(ref.to_xarray(), batched.to_xarray())


def test_missing_jobs_are_nan_and_string_fill():
    class Part(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x == 2:
                raise RuntimeError("boom")
            return dict(v=x, s=f"s{x}", b=x > 1)

    wf = Part()
    with pytest.raises(SweepError):
        wf.run(x=multirun([1, 2, 3]), working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert np.isnan(ds["v"].sel(x=2)) and ds["v"].sel(x=3) == 3
    assert ds["s"].values.tolist() == ["s1", "", "s3"]
    assert ds["b"].dtype == float and np.isnan(ds["b"].sel(x=2))
    xr.testing.assert_identical(MultiRunMetricsWorkflow(working_dir="d").to_xarray(), ds)


# ---------------------------------------------------------------- c. errors


def test_non_dict_return_names_workflow_params_and_type():
    class Bad(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int):
            return [x, x]

    with pytest.raises(SweepError) as ei:
        Bad().run(x=multirun([1, 2]), working_dir="d", progress=False)
    fail = ei.value.failures[0]
    assert fail.exc_type == "TypeError"
    assert "Bad.task" in fail.message and "x=1" in fail.message and "list" in fail.message


def test_ragged_metric_shapes_name_metric_and_shapes():
    class Ragged(MultiRunMetricsWorkflow):
        @staticmethod
        def task(n: int) -> dict:
            return dict(curve=np.zeros(n))

    wf = Ragged()
    wf.run(n=multirun([2, 3]), working_dir="d", progress=False)
    with pytest.warns(RuntimeWarning, match=r"'curve'.*\(2,\).*\(3,\)"):
        ds = wf.to_xarray()
    assert ds["curve"].sel(n=3).values.tolist() == [0.0, 0.0, 0.0]
    assert ds["curve"].sel(n=2).values[:2].tolist() == [0.0, 0.0] and np.isnan(ds["curve"].sel(n=2).values[2])


def test_bad_keyword_types_and_repeats():
    with pytest.raises(TypeError, match="x="):
        Grid().run(x=[1, 2], y=1)
    with pytest.raises(TypeError, match="obj"):
        Grid().run(x=1, y=1, obj=object())
    with pytest.raises(ValueError, match=r"'x'.*2"):
        Grid().run(x=multirun([1, 2, 2]), y=1)
    with pytest.raises(ValueError, match="'eps'"):
        Grid().run(overrides=["+eps=1,1"], x=1, y=1)


def test_none_return_gives_coords_only():
    class NoMetrics(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> None:
            return None

    wf = NoMetrics()
    wf.run(x=multirun([1, 2]), working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert dict(ds.sizes) == {"x": 2} and len(ds.data_vars) == 0


# ---------------------------------------------------------------- d. notebook state


def test_runs_without_working_dir_never_collide_and_never_reuse_metadata():
    wf = Grid()
    wf.run(x=multirun([1, 2, 3]), y=multirun([0]), progress=False)
    first_dir, first = wf.working_dir, wf.to_xarray()
    wf.run(x=multirun([7, 8]), y=multirun([1, 2]), progress=False)  # same second, same instance
    assert wf.working_dir != first_dir
    second = wf.to_xarray()
    assert dict(second.sizes) == {"x": 2, "y": 2}
    assert second["xy"].values.tolist() == [[71, 72], [81, 82]]
    xr.testing.assert_identical(Grid(working_dir=first_dir).to_xarray(), first)


def test_open_hydra_initialize_context_does_not_break_run():
    from hydra import compose, initialize
    from hydra.core.global_hydra import GlobalHydra

    with initialize(version_base="1.3", config_path=None):
        wf = Grid()
        wf.run(x=multirun([1]), y=multirun([2]), working_dir="d", progress=False)
        assert wf.to_xarray()["xy"].item() == 12
        assert GlobalHydra.instance().is_initialized()
        compose(config_name=None, overrides=["+a=1"])  # the user's context still works
    assert not GlobalHydra.instance().is_initialized()


def test_dotted_keys_and_existing_keys_get_the_right_prefix():
    Cfg = make_config(model=make_config(depth=1, width=2), lr=0.1)

    class Nested(MultiRunMetricsWorkflow):
        @staticmethod
        def task(model, lr: float) -> dict:
            return dict(size=model.depth * model.width, lr_seen=lr)

    wf = Nested(Cfg)
    wf.run(**{"model.depth": multirun([1, 3])}, lr=0.5, working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert ds["size"].values.tolist() == [2, 6]
    assert ds["lr_seen"].values.tolist() == [0.5, 0.5]


# ---------------------------------------------------------------- e. metric loading


def test_default_metric_load_fn_is_safe(tmp_path):
    import pickle

    import torch

    from mushin_nb._reload import default_metric_load_fn

    torch.save({"a": np.arange(3), "b": torch.ones(2), "c": 1.5}, tmp_path / "m.pt")
    out = default_metric_load_fn(tmp_path / "m.pt")
    assert out["a"].tolist() == [0, 1, 2] and out["c"] == 1.5

    class Evil:
        def __reduce__(self):
            return (Path("pwned").write_text, ("x",))

    torch.save({"e": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        default_metric_load_fn(tmp_path / "evil.pt")
    assert not Path("pwned").exists()
    np.savez(tmp_path / "m.npz", a=np.ones(2))
    assert default_metric_load_fn(tmp_path / "m.npz")["a"].tolist() == [1.0, 1.0]
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError):
        default_metric_load_fn(tmp_path / "obj.npy")
    (tmp_path / "m.json").write_text('{"acc": 0.5}')
    assert default_metric_load_fn(tmp_path / "m.json") == {"acc": 0.5}
    (tmp_path / "m.csv").write_text("acc\n0.5")
    with pytest.raises(ValueError, match="metric_load_fn"):
        default_metric_load_fn(tmp_path / "m.csv")


# ---------------------------------------------------------------- f. quoting


def test_multirun_values_keep_their_types():
    wf = Echo()
    values = [1, 2.5, True, "1", "2.5", "true", None, "a,b"]
    wf.run(x=multirun(values), working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert ds["kind"].values.tolist() == ["int", "float", "bool", "str", "str", "str", "NoneType", "str"]
    assert wf.multirun_task_overrides["x"] == values
    lst = Echo()
    lst.run(x=hydra_list(["a,b", 1]), working_dir="e", progress=False)
    assert lst.to_xarray().attrs == {"x": "['a,b', 1]"}
    assert lst.multirun_task_overrides == {"x": ["a,b", 1]}


def test_overrides_list_not_mutated_and_hydra_settings_honoured():
    overrides = ["hydra.sweep.dir=my_sweep", "hydra.sweep.subdir=x_${x}", "+y=1"]
    wf = Grid()
    wf.run(x=multirun([1, 2]), overrides=overrides, progress=False)
    assert overrides == ["hydra.sweep.dir=my_sweep", "hydra.sweep.subdir=x_${x}", "+y=1"]
    assert wf.working_dir == Path("my_sweep").resolve()
    assert sorted(p.name for p in wf.multirun_working_dirs) == ["x_1", "x_2"]
    ds = wf.to_xarray(include_working_subdirs_as_data_var=True)
    assert ds["working_subdir"].sel(x=2).item().endswith("x_2")
    assert ds.attrs == {"y": 1}


def test_metrics_and_cfgs_attributes():
    wf = Grid()
    wf.run(x=multirun([1, 2]), y=3, working_dir="d", progress=False)
    assert wf.metrics == {"xy": [13, 23]}
    assert [c.x for c in wf.cfgs] == [1, 2]
    assert [c is j.cfg for c, j in zip(wf.cfgs, wf.jobs)] == [True, True]  # the run's, not re-read
    loaded = Grid().load_from_dir("d")
    assert loaded.metrics == wf.metrics
    assert [c.x for c in loaded.cfgs] == [1, 2]


def test_two_runs_in_the_same_second_get_their_own_directories(monkeypatch):
    import datetime

    import mushin_nb._launch as wmod

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(wmod._dt, "datetime", Frozen)
    a, b = Grid(), Grid()
    a.run(x=multirun([1]), y=1, progress=False)
    b.run(x=multirun([2]), y=1, progress=False)
    assert a.working_dir.name == "03-04-05" and b.working_dir.name == "03-04-05-1"
    assert Grid(working_dir=a.working_dir).to_xarray()["x"].item() == 1
    assert Grid(working_dir=b.working_dir).to_xarray()["x"].item() == 2


def test_job_logs_go_to_the_job_log_file_not_the_notebook(capfd):
    import logging

    class Logs(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            logging.getLogger("my_task").info("hello from job %s", x)
            return dict(x2=x)

    wf = Logs()
    wf.run(x=multirun([1, 2]), working_dir="d", progress=False)
    wf.run(x=multirun([3]), working_dir="e", progress=False)
    for d, x in zip(wf.multirun_working_dirs, [3]):
        assert f"hello from job {x}" in (d / "rai_workflow.log").read_text()
    assert "hello from job 1" in (Path("d") / "0" / "rai_workflow.log").read_text()
    out = capfd.readouterr().out
    assert "hello from job" not in out and "Launching" not in out


def test_each_job_logs_to_its_own_file_also_with_a_delayed_file_handler():
    """The job log's FileHandler follows each job's directory (one handler, reopened per
    job); a job that logs nothing gets no log file (the default, and ``delay=true``),
    and an empty one with ``delay=false``, as Hydra's launcher gives."""
    import logging

    class Logs(MultiRunMetricsWorkflow):
        @staticmethod
        def task(x: int) -> dict:
            if x % 2 == 0:
                logging.getLogger("my_task").info("job %s speaks", x)
            return dict(x2=x)

    for delay in (False, True, None):
        wd = Path(f"logs_{delay}")
        Logs().run(
            x=multirun([1, 2, 3, 4]),
            working_dir=str(wd),
            overrides=[]
            if delay is None
            else [f"++hydra.job_logging.handlers.file.delay={str(delay).lower()}"],
            progress=False,
        )
        for num, x in enumerate([1, 2, 3, 4]):
            log_file = wd / str(num) / "rai_workflow.log"
            if x % 2 == 0:
                assert log_file.read_text().count("speaks") == 1 and f"job {x} speaks" in log_file.read_text()
            elif delay is not False:
                assert not log_file.exists(), (delay, num)
            else:
                assert log_file.read_text() == ""


def test_single_value_multirun_is_a_dimension():
    wf = Grid()
    wf.run(x=multirun([5]), y=2, working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert dict(ds.sizes) == {"x": 1} and ds["xy"].values.tolist() == [52] and ds.attrs == {"y": 2}


def test_jobs_with_a_launcher_that_has_no_worker_count_is_an_error():
    with pytest.raises(ValueError, match="jobs=3"):
        Grid().run(x=multirun([1]), y=1, jobs=3)
    with pytest.raises(ValueError, match="launcher='no_such' is not a launcher this environment has"):
        Grid().run(x=multirun([1]), y=1, jobs=2, launcher="no_such")
