"""A deep copy of an OmegaConf config without ``copy.deepcopy``'s generic machinery,
and ``OmegaConf.update`` of a plain value without its layers of checks and wrappers:
part of :mod:`mushin_nb._compat` (it writes the same node internals as the
``omegaconf-shared-nodes`` patch and is used only while that patch's guard allows it,
and once this module's own checks found each equal to ``copy.deepcopy`` and
``OmegaConf.update``).

The in-process launcher copies the job template's task config once per job: with
``copy.deepcopy`` that is most of a millisecond for a small config (every node's
metadata goes through ``__reduce_ex__``); this makes the same tree directly. Then
each of the job's values is set on the copy: ``OmegaConf.update`` walks the key,
wraps the call in its error formatting and reaches ``ValueNode._set_value``, which
:func:`set_value` calls directly when that is all ``update`` would do.

No ``from __future__ import annotations``: the check's dataclasses are local.
"""

import copy
import enum
import pathlib
import threading
from typing import Any

from . import OMEGACONF_SHARED_NODES, usable

__all__ = ["copy_config", "set_value", "set_both"]

_ATOMIC = (int, float, bool, str, bytes, type(None), enum.Enum, pathlib.PurePath)
_checked: list[bool] = []
_set_checked: list[bool] = []
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


def _direct_set(cfg: Any, key: str, value: Any) -> bool:
    from omegaconf import AnyNode, DictConfig, ValueNode

    if type(value) not in (int, float, bool, str) or (
        type(value) is str and ("${" in value or value == "???")
    ):
        return False  # None, interpolations, missing values and objects take update's path
    parts = key.split(".")
    parent = cfg
    for k in parts[:-1]:
        parent = parent.__dict__["_content"].get(k)
        if type(parent) is not DictConfig or not isinstance(parent.__dict__["_content"], dict):
            return False
    content = parent.__dict__["_content"] if type(parent) is DictConfig else None
    node = content.get(parts[-1]) if isinstance(content, dict) else None
    # update's _set_item_impl calls node._set_value(value) for a value node that has a
    # ref type or is an AnyNode (others are replaced by a new node); a read-only parent refuses
    if not isinstance(node, ValueNode) or not (type(node) is AnyNode or node._has_ref_type()):
        return False
    if parent._get_flag("readonly"):
        return False
    node._set_value(value)
    return True


def set_both(setter: Any, fast: Any, ref: Any, key: str, value: Any) -> tuple[str, str, bool]:
    """Set ``key`` to ``value`` in ``fast`` with ``setter`` (``update`` where it declines)
    and in ``ref`` with ``OmegaConf.update``: each one's outcome ("ok" or the error's
    type name), and whether ``setter`` set it.

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> a, b = OmegaConf.create({"x": 1}), OmegaConf.create({"x": 1})
    >>> set_both(set_value, a, b, "x", 2), a == b
    (('ok', 'ok', True), True)
    """
    from omegaconf import OmegaConf

    outcomes, done = [], False
    for cfg, direct in ((fast, True), (ref, False)):
        try:
            done = done or (direct and bool(setter(cfg, key, value)))
            if not (direct and done):
                OmegaConf.update(cfg, key, value, merge=True)
            outcomes.append("ok")
        except Exception as e:
            outcomes.append(type(e).__name__)
    return outcomes[0], outcomes[1], done


def _same_as_update() -> bool:
    """Whether :func:`_direct_set` leaves what ``OmegaConf.update`` leaves, on a config
    with untyped, typed, converted, nested, interpolated and read-only values."""
    from dataclasses import dataclass, field

    from omegaconf import IntegerNode, OmegaConf

    class Color(enum.Enum):
        RED = 1

    @dataclass
    class Inner:
        n: int = 1
        f: float = 0.5
        s: str = "s"
        b: bool = False

    @dataclass
    class Sample:
        a: Any = 0
        inner: Inner = field(default_factory=Inner)
        loose: Any = field(
            default_factory=lambda: {"c": Color.RED, "d": "${a}", "e": {"g": 1}, "i": IntegerNode(1)}
        )
        frozen: Any = field(default_factory=lambda: {"h": 1})

    sets = [
        ("a", "x"),
        ("loose.i", "abc"),  # a typed node in an untyped dict: both refuse it
        ("inner.n", 3),
        ("inner.f", 2),
        ("inner.s", 7),
        ("inner.b", True),
        ("loose.c", 5),
        ("loose.d", 1.5),
        ("loose.e.g", "y"),
        ("frozen.h", 2),
        ("loose.e", 1),
        ("a", "${inner.n}"),
    ]
    want, got = OmegaConf.structured(Sample), OmegaConf.structured(Sample)
    for cfg in (want, got):
        OmegaConf.set_struct(cfg, True)
        OmegaConf.set_readonly(cfg.frozen, True)
    direct = 0
    for key, value in sets:
        fast, ref, done = set_both(_direct_set, got, want, key, value)
        direct += done
        if fast != ref:
            return False

    def kinds(c: Any) -> list[Any]:
        return [(k, type(c._get_node(k)).__name__, c._get_node(k)._metadata.ref_type) for k in c]

    same = OmegaConf.to_yaml(got) == OmegaConf.to_yaml(want) and direct >= 5
    return bool(
        same
        and all(kinds(got[k]) == kinds(want[k]) for k in ("inner", "loose"))
        and kinds(got) == kinds(want)
    )


def set_value(cfg: Any, key: str, value: Any) -> bool:
    """Set ``key`` (a dotted key) of ``cfg`` to the plain ``value`` as
    ``OmegaConf.update(cfg, key, value, merge=True)`` would, when that comes down to
    its value node's ``_set_value``; False, with nothing changed, for anything else
    (the caller then calls ``OmegaConf.update``).

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"a": {"b": 1}, "c": "${a.b}"})
    >>> set_value(cfg, "a.b", 2), set_value(cfg, "a", 3), set_value(cfg, "new", 1)
    (True, False, False)
    >>> cfg.c
    2
    """
    if not usable(OMEGACONF_SHARED_NODES):
        return False
    if not _set_checked:
        with _check_lock:
            if not _set_checked:
                try:
                    ok = _same_as_update()
                except Exception:
                    ok = False
                _set_checked.append(ok)
    return _set_checked[0] and _direct_set(cfg, key, value)
