"""Hooks the engine calls and another layer provides (the engine imports no UI).

``wf.panel()`` and ``run.view()`` are the notebook layer's: the package root
(``mushin_nb/__init__.py``) names where they live, and the engine calls them by
name here, importing that layer only when a user asks for it.

Examples
--------
>>> provide("echo", lambda *a, **k: (a, k))
>>> call("echo", 1, x=2)
((1,), {'x': 2})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["provide", "call"]

_providers: dict[str, Callable[..., Any] | str] = {}


def provide(name: str, target: Callable[..., Any] | str) -> None:
    """Register what ``call(name, ...)`` runs: a callable, or ``"module:attribute"``
    imported on first use."""
    _providers[name] = target


def call(name: str, *args: Any, **kwargs: Any) -> Any:
    """Run the hook ``name``; a clear error if no layer provides it."""
    target = _providers.get(name)
    if target is None:
        raise RuntimeError(
            f"mushin_nb: nothing provides {name!r}; it comes with the notebook layer "
            "(import mushin_nb.notebook, or %load_ext mushin_nb)."
        )
    if isinstance(target, str):
        mod, _, attr = target.partition(":")
        try:
            target = getattr(importlib.import_module(mod), attr)
        except ImportError as e:
            raise ImportError(
                f"mushin_nb: {name!r} needs the notebook stack (panel, hvplot): {e}. "
                "pip install 'mushin-nb' brings it."
            ) from e
        _providers[name] = target
    return target(*args, **kwargs)
