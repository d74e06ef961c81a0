"""hydra-zen's ``zen`` call without an OmegaConf exception per job: part of
:mod:`mushin_nb._compat`.

``Zen.__call__`` reads a config's positional arguments with ``getattr(cfg, "_args_",
[])``. On a ``DictConfig`` without that key, OmegaConf raises a ``ConfigKeyError``,
formats it (full key, object and reference types) and raises it again as a
``ConfigAttributeError`` that ``getattr`` then swallows: about a fifth of a trivial
job's time in the in-process launcher (py-spy, 2,000 jobs).

The patch ``omegaconf-args-attribute`` sets ``_args_ = ()`` as an instance attribute
of the job's config object for the duration of the call (in its ``__dict__``, where
OmegaConf keeps its own attributes): Python finds it before
``DictConfig.__getattr__`` is consulted, so zen reads no positional argument, as it
did, without the exception. The config's keys, values, YAML and copies do not see
it, and it is removed after the call. A config that has an ``_args_`` key is left
alone. The guard's probe checks, on the installed OmegaConf, that such an attribute
is what ``getattr`` returns and that nothing a config shows changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import Patch, register, usable

__all__ = ["OMEGACONF_ARGS_ATTRIBUTE", "call_without_args_lookup"]

OMEGACONF_ARGS_ATTRIBUTE = "omegaconf-args-attribute"
"""The patch's name (an ``_args_`` instance attribute on the job's config during zen's call)."""

_NO_ARGS = ()


def call_without_args_lookup(fn: Callable[[Any], Any], cfg: Any) -> Any:
    """``fn(cfg)``; while it runs, a ``DictConfig`` ``cfg`` without an ``_args_`` key
    answers ``getattr(cfg, "_args_", [])`` with ``()`` and no exception (when the
    guard allows it).

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"x": 1})
    >>> call_without_args_lookup(lambda c: (getattr(c, "_args_", None), c.x), cfg)
    ((), 1)
    >>> "_args_" in cfg, "_args_" in cfg.__dict__
    (False, False)
    """
    if not usable(OMEGACONF_ARGS_ATTRIBUTE):
        return fn(cfg)
    return _call(fn, cfg)


def _call(fn: Callable[[Any], Any], cfg: Any) -> Any:
    from omegaconf import DictConfig

    if type(cfg) is not DictConfig or "_args_" in cfg.keys():
        return fn(cfg)
    attrs: dict[str, Any] = vars(cfg)
    if "_args_" in attrs:  # a nested call already set it
        return fn(cfg)
    attrs["_args_"] = _NO_ARGS
    try:
        return fn(cfg)
    finally:
        attrs.pop("_args_", None)


def _probe() -> None:
    import copy
    import pickle

    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": 1, "b": {"c": "${a}"}, "l": [1, "${a}"]})
    OmegaConf.set_struct(cfg, True)

    def shown(c: Any) -> tuple[Any, ...]:
        return (
            OmegaConf.to_yaml(c),
            list(c),
            OmegaConf.to_container(c, resolve=True),
            "_args_" in c,
            c == cfg,
        )

    before = shown(cfg)
    seen: list[Any] = []

    def look(c: Any) -> None:
        seen.append(getattr(c, "_args_", None))
        seen.append(shown(c))
        for other in (copy.deepcopy(c), pickle.loads(pickle.dumps(c)), OmegaConf.merge(c, {})):
            seen.append(("_args_" in other, OmegaConf.to_container(other, resolve=True)))

    _call(look, cfg)
    if seen[0] != ():
        raise AssertionError(f"getattr(cfg, '_args_') gave {seen[0]!r}, not the instance attribute")
    if seen[1] != before or shown(cfg) != before:
        raise AssertionError("a config with the attribute shows something else")
    want = (False, before[2])
    if any(s != want for s in seen[2:]):
        raise AssertionError(f"copies of a config with the attribute differ: {seen[2:]!r}")
    try:
        cfg._args_  # noqa: B018  (after the call: OmegaConf's own answer again)
    except AttributeError:
        return
    raise AssertionError("the attribute outlived the call")


register(
    Patch(
        OMEGACONF_ARGS_ATTRIBUTE,
        package="omegaconf",
        versions=">=2.1,<2.4",
        internals="DictConfig instance __dict__ (an attribute found before DictConfig.__getattr__)",
        public_path="hydra-zen's zen(cfg) as it is: an OmegaConf ConfigAttributeError raised and caught per call",
        probe=_probe,
    )
)
