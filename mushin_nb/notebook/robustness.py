"""Exploratory robustness curves: ``SomeRobustnessCurve().panel()``.

The sweep panel, plus: epsilon on the x axis with one curve per value of the
other swept parameter (e.g. per model), a "refine" action that adds epsilon
points inside an interval and runs only those (``resume=True`` in the same
working directory: the engine reuses every cell already done and returns the whole
grid), and a reference curve loaded from an earlier NetCDF file, drawn dashed.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import param

from . import _deps
from ._sweep_panel import SweepPanel

__all__ = ["RobustnessPanel", "refined_values"]


def refined_values(
    current: list[float], start: float, stop: float, count: int, log: bool = False
) -> list[float]:
    """``current`` plus ``count`` points strictly inside ``(start, stop)``, sorted.

    >>> refined_values([0.0, 0.5, 1.0], 0.0, 0.5, 4)
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0]
    """
    import numpy as np

    if count < 1:
        raise ValueError(f"refine: count={count}; add at least one point")
    lo, hi = min(start, stop), max(start, stop)
    if lo == hi:
        raise ValueError(f"refine: the interval [{start}, {stop}] is empty; give two different ends")
    if log:
        if lo <= 0:
            raise ValueError("refine: a log interval needs a start > 0")
        new = np.geomspace(lo, hi, count + 2)[1:-1]
    else:
        new = np.linspace(lo, hi, count + 2)[1:-1]
    out = {float(v) for v in current}
    out.update(float(f"{v:.6g}") for v in new)
    return sorted(out)


class RobustnessPanel(SweepPanel):
    """A :class:`~mushin_nb.notebook.panel.SweepPanel` for a ``RobustnessCurve``.

    Examples
    --------
    >>> from mushin_nb import RobustnessCurve
    >>> class Curve(RobustnessCurve):
    ...     @staticmethod
    ...     def task(epsilon: float) -> dict:
    ...         return dict(acc=1 - epsilon)
    >>> p = Curve().panel(epsilon=[0.0, 0.5], interval=None)
    >>> type(p).__name__, p.n_jobs
    ('RobustnessPanel', 2)
    """

    refine_start = param.Number(default=0.0, doc="Start of the interval to refine.")
    refine_stop = param.Number(default=1.0, doc="End of the interval to refine.")
    refine_count = param.Integer(default=3, bounds=(1, None), doc="Points to add inside the interval.")
    refine_log = param.Boolean(default=False, doc="Space the new points logarithmically.")
    reference_path = param.String(default="", doc="A NetCDF file of an earlier run to overlay.")

    def __init__(self, workflow: Any, **initial: Any) -> None:
        reference = initial.pop("reference", None)
        super().__init__(workflow, **initial)
        if "epsilon" not in self.pickers:
            raise TypeError(
                f"{type(self.workflow).__name__}.task has no `epsilon` parameter, which a "
                "RobustnessCurve needs: add `epsilon: float` to its task."
            )
        pn = _deps.pn()
        self.reference: Any = None
        self.refine_button = pn.widgets.Button(
            **_deps.label("Refine"), **_deps.color("primary"), width=90, margin=(27, 5)
        )
        self.refine_button.on_click(lambda e: self.refine())
        self.refine_adaptive_button = pn.widgets.Button(
            **_deps.label("Refine adaptively"), width=140, margin=(27, 5)
        )
        self.refine_adaptive_button.on_click(lambda e: self.refine_adaptively())
        self.load_button = pn.widgets.Button(**_deps.label("Overlay"), width=90, margin=(27, 5))
        self.load_button.on_click(lambda e: self.load_reference())
        self.reference_text = pn.pane.HTML("", margin=(5, 10))
        if isinstance(reference, (str, os.PathLike)):
            self.reference_path = str(reference)
            self.load_reference()
        elif reference is not None:
            self.set_reference(reference)

    def _title(self) -> str:
        return f"{type(self.workflow).__name__}: robustness curve"

    def _view_kwargs(self) -> dict[str, Any]:
        return dict(x="epsilon", kind="lines", reference=self.reference)

    # -------------------------------------------------------------- refine
    def refine(self) -> Any:
        """Add ``refine_count`` epsilons inside ``[refine_start, refine_stop]`` and
        run only them (``resume=True`` in the last run's working directory).
        Returns the new ``SweepRun``; None if it could not start (see ``message``),
        and then the widgets are as they were."""
        if self.run is None:
            self._refuse("Refine needs a finished run: click Run first.")
            return None
        if not self.run.done:
            self._refuse("A sweep is running: wait for it before refining.")
            return None
        try:
            eps = refined_values(
                self.pickers["epsilon"].values,
                self.refine_start,
                self.refine_stop,
                self.refine_count,
                log=self.refine_log,
            )
        except ValueError as e:
            self._refuse(str(e))
            return None
        picker = self.pickers["epsilon"]
        before = (picker.input.value, self.working_dir, self.resume)
        picker.set_values(eps)
        self.working_dir = str(self.run.sweep_dir)
        self.resume = True
        run = self.start()
        if run is None:  # refused: the widgets go back to what they were
            picker.input.value, self.working_dir, self.resume = before
        return run

    def refine_adaptively(self, batch_size: int | None = None) -> Any:
        """Let the learners of ``adaptive`` add ``refine_count`` epsilons inside
        ``[refine_start, refine_stop]``, where the curves bend (an
        :func:`~mushin_nb.adaptive_range` with ``resume=True`` in the last run's working
        directory: the points outside stay). Returns the ``AdaptiveRun``; None if it
        could not start (see ``message``)."""
        from .._adaptive import adaptive_range

        if self.run is None or not self.run.done:
            self._refuse("Refine needs a finished run: click Run (and let it finish) first.")
            return None
        lo, hi = sorted((self.refine_start, self.refine_stop))
        if self.refine_log or lo == hi:
            self._refuse(
                "Refine adaptively: give an interval with two different ends, on a linear scale (untick log)."
            )
            return None
        inside = [e for e in self.run.dataset["epsilon"].values.tolist() if lo <= e <= hi]
        rule = adaptive_range(
            lo, hi, npoints_goal=max(2, len(inside) + self.refine_count), batch_size=batch_size
        )
        before = (self.working_dir, self.resume)
        self.working_dir, self.resume = str(self.run.sweep_dir), True
        run = self.start(epsilon=rule)
        if run is None:  # refused: the widgets go back to what they were
            self.working_dir, self.resume = before
        if run is not None and self.view is not None:
            picker = self.pickers["epsilon"]

            def adopt(ds: Any) -> None:  # the picker takes the grid the learners made, at the end
                if run.done and self.run is run:
                    picker.set_values(ds["epsilon"].values.tolist())

            self.view.add_listener(adopt)
        return run

    # -------------------------------------------------------------- reference
    def set_reference(self, ds: Any, label: str = "reference") -> None:
        """Draw ``ds`` (an earlier run's Dataset) dashed under the live curves; ``label``
        names it in the panel."""
        self.reference = ds
        if self.view is not None:
            self.view.set_reference(ds)
        dims = ", ".join(f"{k}: {v}" for k, v in ds.sizes.items())
        self.reference_text.object = (
            f"Overlay (dashed): {html.escape(label)} &mdash; dims {{{html.escape(dims)}}}, "
            f"variables {html.escape(', '.join(map(str, ds.data_vars)))}"
        )

    def load_reference(self) -> Any:
        """Load ``reference_path`` with :func:`mushin_nb.load_netcdf` and draw it
        dashed under the live curves. Returns the Dataset (None on error)."""
        from .._dataset import load_netcdf

        text = self.reference_path.strip()
        if not text:
            self.reference_text.object = "Type the path of a NetCDF file saved earlier."
            return None
        path = Path(os.path.expanduser(text))
        try:
            ds = load_netcdf(path)
        except (OSError, ValueError) as e:
            self.reference_text.object = f'<span style="color:#b91c1c">Cannot read {html.escape(str(path))}: {html.escape(str(e))}</span>'
            return None
        if "epsilon" not in ds.dims:
            self.reference_text.object = (
                f'<span style="color:#b91c1c">{html.escape(str(path))} has no epsilon dimension '
                f"(dims: {html.escape(', '.join(map(str, ds.dims)))}); load a robustness curve.</span>"
            )
            return None
        self.set_reference(ds, label=str(path))
        return ds

    def _extra_controls(self) -> list[Any]:
        pn = _deps.pn()
        return [
            pn.Row(
                pn.widgets.FloatInput.from_param(
                    self.param.refine_start, **_deps.label("refine from"), width=100
                ),
                pn.widgets.FloatInput.from_param(self.param.refine_stop, **_deps.label("to"), width=100),
                pn.widgets.IntInput.from_param(
                    self.param.refine_count, **_deps.label("new points"), width=90
                ),
                pn.widgets.Checkbox.from_param(self.param.refine_log, **_deps.label("log"), margin=(30, 5)),
                self.refine_button,
                self.refine_adaptive_button,
            ),
            pn.Row(
                pn.widgets.TextInput.from_param(
                    self.param.reference_path, **_deps.label("overlay an earlier run (NetCDF)"), width=320
                ),
                self.load_button,
            ),
            self.reference_text,
        ]
