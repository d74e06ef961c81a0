"""Per-job shortcuts of the in-process launcher for the usual job overrides
(``x=1``, ``+lr=0.1``, ``name=adam``): parsing them without Hydra's ANTLR grammar,
and writing their values as YAML text without PyYAML's emitter.

Each shortcut covers a narrow, exactly-known form and answers None for anything
else (the caller then takes Hydra's / OmegaConf's own path); :class:`QuickParser`
also checks its first result of every form against Hydra's parser and stops at a
difference.

No ``from __future__ import annotations`` under ``hydra_plugins`` (see
``sweeper.py``).

Examples
--------
>>> from hydra.core.override_parser.overrides_parser import OverridesParser
>>> q = QuickParser(OverridesParser.create().parse_override)
>>> [q.parse(t).value() for t in ("x=1", "+lr=0.5", "opt=adam")], q.parse("x=[1,2]")
([1, 0.5, 'adam'], None)
>>> q.parse_sweep("x=1,2.5,adam").value().list, q.parse_sweep("x=choice(1,2)")
([1, 2.5, 'adam'], None)
>>> [yaml_scalar(v) for v in (3, "x=1", "3", 0.1, True, None, "a b")]
['3', 'x=1', "'3'", '0.1', 'true', 'null', None]
"""

import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["QuickParser", "yaml_scalar"]

_OVERRIDE = re.compile(r"(\+{0,2})([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(.*)\Z", re.S)
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+\Z")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# words Hydra's grammar (or YAML) reads as something other than a string
_SPECIAL_WORDS = frozenset(
    ["true", "false", "null", "nan", "inf", "infinity", "yes", "no", "on", "off", "y", "n", "none"]
)


def _value(raw: str) -> tuple[str, Any] | None:
    if _INT.match(raw):
        return "int", int(raw)
    if _FLOAT.match(raw):
        return "float", float(raw)
    if _WORD.match(raw) and raw.lower() not in _SPECIAL_WORDS:
        return "str", raw
    return None


class QuickParser:
    """Parses ``key=value`` / ``+key=value`` / ``++key=value`` overrides whose key is
    a dotted name and whose value is a plain int (``-3``), float (``0.25``) or word
    (``adam``) into the ``Override`` Hydra's parser makes; None for anything else.

    The first override of every (prefix, value kind) is also parsed by ``hydra_parse``
    and compared; at the first difference the parser turns itself off.

    Parameters
    ----------
    hydra_parse : callable
        Hydra's ``OverridesParser.parse_override``.
    """

    def __init__(self, hydra_parse: Callable[[str], Any]) -> None:
        self.hydra_parse = hydra_parse
        self.checked: set[tuple[str, ...]] = set()
        self.on = True

    def parse(self, text: str) -> Any:
        """The ``Override`` of ``text``, or None when it is not a covered form."""
        m = _OVERRIDE.match(text) if self.on else None
        if m is None:
            return None
        prefix, key, raw = m.groups()
        got = _value(raw)
        if got is None:
            return None
        from hydra.core.override_parser.types import Override, OverrideType, ValueType

        kind, value = got
        otype = (OverrideType.CHANGE, OverrideType.ADD, OverrideType.FORCE_ADD)[len(prefix)]
        o = Override(
            type=otype, key_or_group=key, value_type=ValueType.ELEMENT, _value=value, input_line=text
        )
        if (prefix, kind) not in self.checked:
            ref = self.hydra_parse(text)
            if ref != o or type(ref.value()) is not type(value):
                self.on = False
                return ref
            self.checked.add((prefix, kind))
        return o

    def parse_sweep(self, text: str) -> Any:
        """The ``Override`` of a simple sweep ``key=v1,v2,...`` (a prefix allowed)
        whose values are all covered forms, as Hydra's parser makes it; None for
        anything else (``choice(...)``, ``range(...)``, quotes, spaces, lists...).

        The first sweep of every (prefix, value kinds) is checked against Hydra's
        parse of a short sweep of the same form: one value of each kind, in order.
        """
        m = _OVERRIDE.match(text) if self.on else None
        if m is None:
            return None
        prefix, key, raw = m.groups()
        parts = raw.split(",")
        got = [_value(p) for p in parts]
        if len(parts) < 2 or None in got:
            return None
        first: dict[str, str] = {}
        for part, g in zip(parts, got):
            first.setdefault(g[0], part)  # type: ignore[index]
        form = (prefix, "sweep", *first)
        if form not in self.checked:
            sample = list(first.values()) if len(first) > 1 else parts[:2]
            short = f"{prefix}{key}=" + ",".join(sample)
            mine = _sweep(prefix, key, [_value(p)[1] for p in sample], short)  # type: ignore[index]
            ref = self.hydra_parse(short)
            if ref != mine or [type(v) for v in ref.value().list] != [type(v) for v in mine.value().list]:
                self.on = False
                return None
            self.checked.add(form)
        return _sweep(prefix, key, [g[1] for g in got], text)  # type: ignore[index]


def _sweep(prefix: str, key: str, values: list[Any], text: str) -> Any:
    from hydra.core.override_parser.types import ChoiceSweep, Override, OverrideType, ValueType

    return Override(
        type=(OverrideType.CHANGE, OverrideType.ADD, OverrideType.FORCE_ADD)[len(prefix)],
        key_or_group=key,
        value_type=ValueType.SIMPLE_CHOICE_SWEEP,
        _value=ChoiceSweep(list=values, simple_form=True),
        input_line=text,
    )


# YAML 1.1 (PyYAML) plain scalars that start with a letter, "_" or "/" and read as
# something other than a string: booleans and nulls
_YAML_WORDS = frozenset(["yes", "no", "true", "false", "on", "off", "y", "n", "null", "~"])
_PLAIN = re.compile(r"\+{0,2}[A-Za-z_/][A-Za-z0-9_./=,+-]*\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_YAML_FLOAT = re.compile(r"-?[0-9][0-9]*\.[0-9]*(?:e[-+][0-9]+)?\Z")


def yaml_scalar(v: Any) -> str | None:
    """The text OmegaConf's YAML dumper writes for the scalar ``v`` (as a mapping
    value or a list item), for the forms covered here; None for any other.

    Examples
    --------
    >>> [yaml_scalar(v) for v in (-2, 1e-05, float("nan"), "/tmp/x_1", "yes", "1.5", "")]
    ['-2', '1.0e-05', None, '/tmp/x_1', None, None, None]
    """
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    t = type(v)
    if t is int:
        return str(v)
    if t is float:
        if not math.isfinite(v):
            return None
        text = repr(v).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
        return text if _YAML_FLOAT.match(text) else None
    if t is str:
        if _DIGITS.match(v):
            return "'" + v + "'"  # OmegaConf quotes a string that reads as an int
        if _PLAIN.match(v) and v.lower() not in _YAML_WORDS and v.lower() not in _SPECIAL_WORDS:
            return v
    return None
