"""A widget panel to pick sweep values, run in the background, watch and save.

``SomeWorkflow().panel(**initial)`` and ``mushin_nb.sweep_panel(task_or_workflow,
**initial)`` return a :class:`SweepPanel` (a :class:`RobustnessPanel` for a
``RobustnessCurve``). It renders in JupyterLab, Notebook 7 and VS Code (see
:mod:`mushin_nb.notebook.view` for what each needs) and can be served
(``mushin-nb serve module:Class``).

UI state lives in ``param.Parameterized`` objects, so code (and tests) can drive
the panel without a browser: set a widget's ``value`` and click a button with
``button.clicks += 1``.

Examples
--------
>>> from mushin_nb import MultiRunMetricsWorkflow
>>> class Sq(MultiRunMetricsWorkflow):
...     @staticmethod
...     def task(x: float, n: int = 2) -> dict:
...         return dict(y=x ** n)
>>> p = Sq().panel(x=[1.0, 2.0, 3.0], interval=None)
>>> p.n_jobs, p.pickers["x"].swept, p.pickers["n"].swept
(3, True, False)

Modules: this one is the public face; the work is in ``_sweep_panel``
(:class:`SweepPanel`), ``_picker`` (:class:`ValuePicker`) and :mod:`.robustness`.
"""

from __future__ import annotations

from typing import Any

from .._launchers import installed_launchers, launcher_label
from ._params import make_workflow
from ._picker import ValuePicker
from ._sweep_panel import SweepPanel, failures_html, in_control_terms
from .robustness import RobustnessPanel

__all__ = [
    "sweep_panel",
    "SweepPanel",
    "RobustnessPanel",
    "ValuePicker",
    "make_workflow",
    "failures_html",
    "in_control_terms",
    "installed_launchers",
    "launcher_label",
]


def sweep_panel(task_or_workflow: Any, **initial: Any) -> SweepPanel:
    """A :class:`SweepPanel` for a task function or a workflow (class or
    instance); a ``RobustnessCurve`` gets a :class:`RobustnessPanel`.

    ``initial`` pre-fills it: task parameters (a list sweeps, a scalar fixes),
    and ``launcher``, ``launcher_settings`` (a dict as in ``start``, or the field's
    ``name=value`` text), ``working_dir``, ``resume``, ``workers``, ``on_error``,
    ``save_path``, ``metric``, ``interval`` (seconds between redraws).

    Examples
    --------
    >>> from mushin_nb import sweep_panel
    >>> def task(lr: float, seed: int = 0) -> dict:
    ...     return dict(loss=lr * seed)
    >>> p = sweep_panel(task, lr=[0.01, 0.1], seed=[0, 1, 2], launcher="fast", interval=None)
    >>> p.n_jobs, p.launcher, p.kwargs()["launcher"]
    (6, 'mushin_nb', None)
    """
    from .. import RobustnessCurve

    wf = make_workflow(task_or_workflow)
    if isinstance(wf, RobustnessCurve):
        return RobustnessPanel(wf, **initial)
    return SweepPanel(wf, **initial)
