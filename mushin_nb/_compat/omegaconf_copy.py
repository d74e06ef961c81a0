"""A deep copy of an OmegaConf config without ``copy.deepcopy``'s generic machinery:
part of :mod:`mushin_nb._compat` (it writes the same node internals as the
``omegaconf-shared-nodes`` patch and is used only while that patch's guard allows it,
and once this module's own check found it equal to ``copy.deepcopy``).

The in-process launcher copies the job template's task config once per job: with
``copy.deepcopy`` that is most of a millisecond for a small config (every node's
metadata goes through ``__reduce_ex__``); this makes the same tree directly.

No ``from __future__ import annotations``: the check's dataclasses are local.
"""

import copy
import enum
import pathlib
import threading
from typing import Any

from . import OMEGACONF_SHARED_NODES, usable

__all__ = ["copy_config"]

_ATOMIC = (int, float, bool, str, bytes, type(None), enum.Enum, pathlib.PurePath)
_checked: list[bool] = []
_check_lock = threading.Lock()


def _copy(node: Any, parent: Any) -> Any:
    src = node.__dict__
    res = object.__new__(type(node))
    out = res.__dict__
    out.update(src)
    md = copy.copy(src["_metadata"])
    if md.flags is not None:
        md.flags = dict(md.flags)
    if getattr(md, "resolver_cache", None) is not None:
        md.resolver_cache = copy.deepcopy(md.resolver_cache)
    out["_metadata"] = md
    out["_parent"] = parent
    if "_flags_cache" in out:
        out["_flags_cache"] = None
    content = src.get("_content")
    if isinstance(content, dict):
        out["_content"] = {k: _copy(v, res) for k, v in content.items()}
    elif isinstance(content, list):
        out["_content"] = [_copy(v, res) for v in content]
    if "_val" in src and not isinstance(src["_val"], _ATOMIC):
        out["_val"] = copy.deepcopy(src["_val"])
    return res


def _same_as_deepcopy() -> bool:
    """Whether :func:`_copy` makes what ``copy.deepcopy`` makes, on a config with every
    kind of node (typed, nested, lists, interpolations, missing values, flags)."""
    from dataclasses import dataclass, field

    from omegaconf import OmegaConf

    class Color(enum.Enum):
        RED = 1

    @dataclass
    class Inner:
        n: int = 1
        f: float = 0.5
        s: str = "${outer}"

    @dataclass
    class Sample:
        outer: str = "o"
        inner: Inner = field(default_factory=Inner)
        items: list = field(default_factory=lambda: [1, "${outer}", {"k": None}])
        color: Color = Color.RED
        path: pathlib.Path = pathlib.Path("/a")
        missing: Any = "???"

    cfg = OmegaConf.structured(Sample)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg.inner, True)
    want, got = copy.deepcopy(cfg), _copy(cfg, None)
    same = OmegaConf.to_yaml(got) == OmegaConf.to_yaml(want) and OmegaConf.to_container(
        got, resolve=True, throw_on_missing=False
    ) == OmegaConf.to_container(want, resolve=True, throw_on_missing=False)
    same = same and OmegaConf.get_type(got) is Sample and OmegaConf.is_readonly(got.inner)
    same = same and OmegaConf.is_struct(got) and got.inner._get_parent() is got
    got.outer = "changed"  # a copy: the original does not change
    return bool(same and cfg.outer == "o" and got.inner.s == "changed" and cfg.inner.s == "o")


def copy_config(cfg: Any) -> Any:
    """``copy.deepcopy(cfg)`` of an OmegaConf container, made directly when the
    internals are the known ones (else ``copy.deepcopy`` itself).

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"a": {"b": 1}, "c": "${a.b}"})
    >>> new = copy_config(cfg)
    >>> new.a.b = 2
    >>> (new.c, cfg.c)
    (2, 1)
    """
    if not usable(OMEGACONF_SHARED_NODES):
        return copy.deepcopy(cfg)
    if not _checked:
        with _check_lock:
            if not _checked:
                try:
                    ok = _same_as_deepcopy()
                except Exception:
                    ok = False
                _checked.append(ok)
    if not _checked[0]:
        return copy.deepcopy(cfg)
    return _copy(cfg, cfg.__dict__["_parent"])
