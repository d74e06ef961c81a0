"""mushin-nb: Hydra parameter sweeps from a Jupyter notebook, as labeled xarray Datasets.

The API of ``rai_toolbox.mushin`` (``from mushin_nb import MultiRunMetricsWorkflow,
multirun``), plus live runs, failure capture, resume, NetCDF, a cell magic and a
widget panel. Heavy modules load on first use: ``import mushin_nb`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BaseWorkflow": "._workflows",
    "MultiRunMetricsWorkflow": "._multirun",
    "RobustnessCurve": "._robustness",
    "adaptive_range": "._adaptive",
    "AdaptiveRun": "._adaptive_run",
    "multirun": "hydra_zen",
    "hydra_list": "hydra_zen",
    "SweepRun": "._execution",
    "SweepError": "._execution",
    "SweepEvent": "._execution",
    "JobFailure": "._execution",
    "save_netcdf": "._dataset",
    "load_netcdf": "._dataset",
    "sweep_panel": ".notebook.panel",
}

__all__ = sorted(_EXPORTS) + ["load_ipython_extension", "unload_ipython_extension"]

if TYPE_CHECKING:  # pragma: no cover
    from hydra_zen import hydra_list, multirun

    from ._adaptive import adaptive_range
    from ._adaptive_run import AdaptiveRun
    from ._dataset import load_netcdf, save_netcdf
    from ._execution import JobFailure, SweepError, SweepEvent, SweepRun
    from ._multirun import MultiRunMetricsWorkflow
    from ._robustness import RobustnessCurve
    from ._workflows import BaseWorkflow


# what the engine's wf.panel() and run.view() call: the notebook layer, loaded on use
from . import _hooks  # noqa: E402

_hooks.provide("panel", "mushin_nb.notebook.panel:sweep_panel")
_hooks.provide("view", "mushin_nb.notebook.view:run_view")
_hooks.provide("load_ipython_extension", "mushin_nb.notebook.magic:load_ipython_extension")
_hooks.provide("unload_ipython_extension", "mushin_nb.notebook.magic:unload_ipython_extension")


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'mushin_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext mushin_nb``: registers the ``%%mushin_sweep`` cell magic.

    Examples
    --------
    >>> from IPython.testing.globalipapp import get_ipython
    >>> ip = get_ipython()
    >>> load_ipython_extension(ip)
    >>> "mushin_sweep" in ip.magics_manager.magics["cell"]
    True
    >>> unload_ipython_extension(ip)
    """
    _hooks.call("load_ipython_extension", ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext mushin_nb``: removes the ``%%mushin_sweep`` magic again.

    Examples
    --------
    >>> from IPython.testing.globalipapp import get_ipython
    >>> ip = get_ipython()
    >>> load_ipython_extension(ip)
    >>> unload_ipython_extension(ip)
    >>> "mushin_sweep" in ip.magics_manager.magics["cell"]
    False
    """
    _hooks.call("unload_ipython_extension", ipython)
