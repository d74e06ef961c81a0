"""The engine checks a sweep against its task's signature (issue 12, point 3):
wrong value types and missing required values are refused before anything runs,
on every surface; a task parameter given in Hydra's grammar needs no '+'."""

import pytest

from mushin_nb import MultiRunMetricsWorkflow, multirun
from mushin_nb._signature import TaskArgumentError

pytestmark = pytest.mark.usefixtures("cleandir")


class Typed(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int, lr: float = 0.1, name: str | None = None) -> dict:
        return dict(y=x * lr)


def test_wrong_value_type_is_refused_before_anything_runs(cleandir):
    with pytest.raises(TaskArgumentError, match=r"x: 'abc' is not an integer.*Typed.task accepts: x: int"):
        Typed().run(x=multirun([1, "abc"]), working_dir="d", progress=False)
    with pytest.raises(TaskArgumentError, match="lr: 'fast' is not a number"):
        Typed().run(x=1, lr="fast", working_dir="d", progress=False)
    assert not (cleandir / "d").exists() and not (cleandir / "multirun").exists()


def test_missing_required_value_is_refused(cleandir):
    with pytest.raises(TaskArgumentError, match=r"No value for the required parameter x: give x=\.\.\."):
        Typed().run(lr=multirun([0.1, 1.0]), working_dir="d", progress=False)
    assert not (cleandir / "d").exists()


def test_none_for_an_optional_parameter_passes(cleandir):
    wf = Typed()
    wf.run(x=multirun([1, 2]), name=None, working_dir="d", progress=False)
    assert wf.to_xarray()["y"].values.tolist() == [0.1, 0.2]


def test_a_task_parameter_in_overrides_needs_no_plus(cleandir):
    wf = Typed()
    wf.run(overrides=["x=range(0,4)", "lr=1.0"], working_dir="d", progress=False)
    ds = wf.to_xarray()
    assert ds["x"].values.tolist() == [0, 1, 2, 3] and ds["y"].values.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_names_the_task_does_not_take_still_label_the_dataset(cleandir):
    """rai mushin's behaviour, kept: an extra name becomes a coordinate or attribute."""
    wf = Typed()
    wf.run(x=multirun([1, 2]), tag=multirun(["a", "b"]), working_dir="d", progress=False)
    assert dict(wf.to_xarray().sizes) == {"x": 2, "tag": 2}


def test_a_base_config_can_supply_required_values(cleandir):
    from hydra_zen import make_config

    wf = Typed(make_config(x=3))
    wf.run(lr=multirun([1.0, 2.0]), working_dir="d", progress=False)
    assert wf.to_xarray()["y"].values.tolist() == [3.0, 6.0]
