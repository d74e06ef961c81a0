"""The sweep panel's "launcher settings" text field: what ``launcher_settings={...}``
is in code and ``hydra.launcher.<name>=<value>`` in the magic's line, written as
``name=value`` items separated by spaces, each value in Hydra's override grammar (as
in the magic: ``partition=gpu timeout_min=60 additional_parameters={mail-type:END}``).

Examples
--------
>>> settings_text({"partition": "gpu", "timeout_min": 60})
"partition='gpu' timeout_min=60"
>>> read_settings("partition=gpu timeout_min=60 setup=['module load cuda']")
{'partition': 'gpu', 'timeout_min': 60, 'setup': ['module load cuda']}
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

__all__ = ["settings_text", "read_settings", "check_settings"]

_FORM = (
    "write name=value items separated by spaces, e.g. partition=gpu timeout_min=60 "
    "(quote a value holding a space: setup=['module load cuda'])"
)


def settings_text(settings: Mapping[str, Any] | str | None) -> str:
    """``launcher_settings={...}`` as the panel's text field shows it.

    >>> settings_text({"address": "tcp://10.0.0.5:8786", "n_jobs": 8})
    "address='tcp://10.0.0.5:8786' n_jobs=8"
    """
    from .._sweep import render_value

    if settings is None:
        return ""
    if isinstance(settings, str):
        return settings.strip()
    if not isinstance(settings, Mapping):
        raise TypeError(
            f"launcher_settings={settings!r}: give a dict of the launcher's settings, e.g. "
            "launcher_settings={'partition': 'gpu', 'timeout_min': 60}"
        )
    return " ".join(f"{k}={render_value(v, name=f'launcher_settings[{k!r}]')}" for k, v in settings.items())


def read_settings(text: str) -> dict[str, Any]:
    """The panel's launcher settings text -> ``launcher_settings`` (a dict); a
    ``ValueError`` in the field's terms for text that is not ``name=value`` items.

    >>> read_settings("")
    {}
    >>> read_settings("hydra.launcher.address=tcp://127.0.0.1:8786")  # as in the magic's line
    {'address': 'tcp://127.0.0.1:8786'}
    >>> read_settings("partition")
    Traceback (most recent call last):
    ...
    ValueError: launcher settings: 'partition' is not name=value; write name=value items ...
    """
    from .._overrides import OverrideError, parse_override, unquote
    from ._line import split_line

    out: dict[str, Any] = {}
    for tok in split_line(text):
        tok = tok.lstrip("+").removeprefix("hydra.launcher.")  # the magic's form, copied
        name, eq, _ = tok.partition("=")
        if not eq or not name.strip().isidentifier():
            raise ValueError(f"launcher settings: {tok!r} is not name=value; {_FORM}")
        try:
            o = parse_override(tok)
        except OverrideError as e:
            raise ValueError(f"launcher settings: {tok!r}: {e}; {_FORM}") from None
        if o.is_sweep_override():
            raise ValueError(
                f"launcher settings: {tok!r} gives several values; a setting takes one value "
                "(quote a string holding a comma: name='a,b')"
            )
        if name in out:
            raise ValueError(f"launcher settings: {name!r} is given twice; give it once")
        out[name.strip()] = unquote(o.value())
    return out


def check_settings(text: str, launcher: str) -> dict[str, Any]:
    """:func:`read_settings`, each name checked against the launcher's settings (a
    name it does not have is a ``ValueError`` naming the ones it has).

    >>> check_settings("n_jobs=2", "joblib")
    {'n_jobs': 2}
    >>> check_settings("partion=gpu", "joblib")
    Traceback (most recent call last):
    ...
    ValueError: launcher settings: launcher joblib has no setting 'partion'; its settings are ...
    """
    from .._launchers import launcher_fields, resolve_launcher

    settings = read_settings(text)
    if not settings:
        return settings
    info = resolve_launcher(launcher)
    fields = launcher_fields(info)
    for name in settings if fields is not None else ():
        assert fields is not None
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"launcher settings: launcher {info.name} has no setting {name!r}; {hint}"
                f"its settings are {', '.join(fields)}"
            )
    return settings
