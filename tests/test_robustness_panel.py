"""Exploratory robustness curves: one curve per model, refine runs only the new
epsilons (resume in the same working dir), overlay an earlier NetCDF file."""

from __future__ import annotations

import pytest

from mushin_nb import RobustnessCurve

pytest.importorskip("panel")

CALLS: list[tuple[float, str]] = []


class Curve(RobustnessCurve):
    @staticmethod
    def task(epsilon: float, model: str = "a") -> dict:
        CALLS.append((epsilon, model))
        return dict(acc=1.0 - epsilon * (2.0 if model == "b" else 1.0))


def test_refined_values():
    from mushin_nb.notebook.robustness import refined_values

    assert refined_values([0.0, 1.0], 0.0, 1.0, 3) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert refined_values([0.01, 1.0], 0.01, 1.0, 1, log=True) == [0.01, 0.1, 1.0]
    with pytest.raises(ValueError, match="empty"):
        refined_values([0.0], 0.5, 0.5, 2)
    with pytest.raises(ValueError, match="start > 0"):
        refined_values([0.0], 0.0, 1.0, 2, log=True)


def test_robustness_panel_refine_and_overlay(tmp_path):
    import holoviews as hv

    from mushin_nb.notebook.robustness import RobustnessPanel

    CALLS.clear()
    p = Curve().panel(
        epsilon=[0.0, 0.5, 1.0], model=["a", "b"], working_dir=str(tmp_path / "s"), interval=None
    )
    assert isinstance(p, RobustnessPanel) and p.n_jobs == 6
    # the epsilon picker has the list and the (log) range builder
    assert p.pickers["epsilon"].range_builder is not None
    p.run_button.clicks += 1
    ds = p.wait(60)
    assert ds["acc"].sel(model="b").values.tolist() == [1.0, 0.0, -1.0]
    # one curve per model, epsilon on x
    plot = p.view.plot_element
    curves = plot.traverse(lambda e: e, [hv.Curve])
    assert {c.kdims[0].name for c in curves} == {"epsilon"} and len(curves) == 2
    # save it, to overlay later
    p.save_path.value = str(tmp_path / "first.nc")
    p.save_button.clicks += 1
    assert (tmp_path / "first.nc").exists()

    # refine [0, 0.5] with 1 new point: only the two new cells run
    CALLS.clear()
    p.refine_start, p.refine_stop, p.refine_count = 0.0, 0.5, 1
    p.refine_button.clicks += 1
    ds = p.wait(60)
    assert sorted(CALLS) == [(0.25, "a"), (0.25, "b")]
    assert p.run.skipped == 6 and p.resume and p.working_dir == str(tmp_path / "s")
    assert ds["epsilon"].values.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert ds["acc"].sel(model="a").values.tolist() == [1.0, 0.75, 0.5, 0.0]
    assert set(ds["status"].values.ravel().tolist()) == {"done"}

    # overlay the first run, loaded from NetCDF: drawn as extra (dashed) curves
    p.reference_path = str(tmp_path / "first.nc")
    p.load_button.clicks += 1
    assert p.reference is not None and "first.nc" in p.reference_text.object
    plot = p.view.plot_element
    labels = {c.vdims[0].name for c in plot.traverse(lambda e: e, [hv.Curve])}
    assert labels == {"acc", "acc (reference)"}
    ref_curves = [c for c in plot.traverse(lambda e: e, [hv.Curve]) if c.vdims[0].name == "acc (reference)"]
    assert len(ref_curves) == 2 and ref_curves[0].dimension_values("epsilon").tolist() == [0.0, 0.5, 1.0]


def test_refine_needs_a_run_and_overlay_checks_the_file(tmp_path):
    p = Curve().panel(epsilon=[0.0, 1.0], interval=None)
    assert p.refine() is None and "Run first" in p.message
    p.reference_path = str(tmp_path / "missing.nc")
    assert p.load_reference() is None and "Cannot read" in p.reference_text.object
