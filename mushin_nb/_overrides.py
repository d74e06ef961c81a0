"""Hydra's override grammar, read one way everywhere: one parser, one error text.

The API (``overrides=[...]``), the magic's line, the panel's value fields and the
engine's own records all read overrides through these functions, so a value means
the same thing on every surface and a mistake gets the same explanation.

Examples
--------
>>> o = parse_override("lr=0.1,'a,b'")
>>> override_name(o), override_values(o)
('lr', [0.1, 'a,b'])
>>> parse_override("lr=[0.1")
Traceback (most recent call last):
...
mushin_nb._overrides.OverrideError: Cannot parse the override 'lr=[0.1': ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "OverrideError",
    "parse_override",
    "parse_overrides",
    "override_name",
    "override_values",
    "unquote",
    "is_hydra_key",
    "has_value",
    "has_node",
]


class OverrideError(ValueError):
    """An override that Hydra's grammar cannot read, or that names no grid of values."""


_local = threading.local()


def _parser() -> Any:
    p = getattr(_local, "parser", None)
    if p is None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        p = _local.parser = OverridesParser.create()
    return p


def parse_override(text: str) -> Any:
    """One override text -> Hydra's ``Override``; :class:`OverrideError` (saying what
    Hydra could not read) for a text that is not one."""
    if not isinstance(text, str):
        raise OverrideError(f"An override must be a string like 'lr=0.1,1.0'; got {text!r}")
    try:
        (o,) = _parser().parse_overrides([text])
    except Exception as e:  # hydra's OverrideParseException
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OverrideError(f"Cannot parse the override {text!r}: {msg}") from None
    return o


def parse_overrides(texts: Iterable[str]) -> list[Any]:
    """:func:`parse_override` of each text."""
    return [parse_override(t) for t in texts]


def override_name(o: Any) -> str:
    """The key an override sets, without Hydra's ``+``/``++``/``~`` prefix."""
    return str(o.get_key_element()).lstrip("+~")


def unquote(v: Any) -> Any:
    """Hydra parser values -> plain Python values (``QuotedString`` -> ``str``).

    >>> unquote(parse_override("x='a,b'").value())
    'a,b'
    """
    from hydra.core.override_parser.types import QuotedString

    if isinstance(v, QuotedString):
        return v.text
    if isinstance(v, list):
        return [unquote(x) for x in v]
    if isinstance(v, dict):
        return {k: unquote(x) for k, x in v.items()}
    return v


def override_values(o: Any) -> list[Any]:
    """The Python values an override gives: each value of a discrete sweep
    (``a,b``, ``range()``, ``choice()``), or its one value. An interval sweep has no
    grid of values: :class:`OverrideError`.

    >>> override_values(parse_override("x=range(0,3)"))
    [0, 1, 2]
    """
    if o.is_sweep_override():
        if not o.is_discrete_sweep():
            raise OverrideError(
                f"The override {o.input_line!r} is an interval sweep, which has no grid of values; "
                "a sampling sweeper (e.g. Optuna) is needed for it. Give a list, range() or choice() "
                "of values instead."
            )
        return [unquote(v) for v in o.sweep_iterator()]
    return [unquote(o.value())]


def is_hydra_key(key: str) -> bool:
    """True for Hydra's own settings (``hydra.*``, ``hydra/...`` groups)."""
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def _select(cfg: Any, key: str) -> tuple[bool, Any]:
    if cfg is None:
        return False, None
    if "." not in key:
        if isinstance(cfg, Mapping):
            return key in cfg, cfg.get(key)
        fields = getattr(cfg, "__dataclass_fields__", None)
        present = hasattr(cfg, key) or (fields is not None and key in fields)
        return present, getattr(cfg, key, None)
    from omegaconf import DictConfig, OmegaConf

    try:
        # OmegaConf.create takes a dict or a DictConfig (any other Mapping fails in both calls)
        node = OmegaConf.create(cfg) if isinstance(cfg, dict | DictConfig) else OmegaConf.structured(cfg)
        missing = object()
        v = OmegaConf.select(node, key, default=missing, throw_on_missing=False)
        return v is not missing, None if v is missing else v
    except Exception:
        return False, None


def has_value(cfg: Any, key: str) -> bool:
    """True when the base config sets ``key`` to something other than None
    (rai mushin's rule: a keyword value for any other key is added with ``+``)."""
    present, value = _select(cfg, key)
    return present and value is not None


def has_node(cfg: Any, key: str) -> bool:
    """True when the base config has a node at ``key`` (even None)."""
    return _select(cfg, key)[0]
