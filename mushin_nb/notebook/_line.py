"""Reading the ``%%mushin_sweep`` line: tokens, overrides, and the engine's refusals
said in the magic's terms. The overrides are read with the engine's parser
(:mod:`mushin_nb._overrides`) and checked with the engine's signature check
(:func:`mushin_nb._signature.check_sweep_against_task`, strict: a name the task does
not take is refused); this module only says their answers in the line's terms.

Examples
--------
>>> line = read_overrides(["lr=0.1,1", "seed=range(2)", "hydra.job.chdir=False"])
>>> line.names, line.hydra
({'lr': [0.1, 1], 'seed': [0, 1]}, ['hydra.job.chdir=False'])
>>> def task(lr: float, seed: int) -> dict: ...
>>> check_against_task(task, line, base_cfg=None, label="task()")
>>> check_against_task(task, read_overrides(["lr=abc"]), base_cfg=None, label="task()")
Traceback (most recent call last):
...
IPython.core.error.UsageError: In 'lr=abc': lr: 'abc' is not a number; lr: float expects a number. \
No value for the required parameter seed: add seed=... to the line. task() accepts: lr: float, seed: int
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

from .._errors import rephrase
from .._overrides import OverrideError, is_hydra_key, override_name, override_values, parse_override
from .._signature import TaskArgumentError, check_sweep_against_task

__all__ = [
    "split_line",
    "strip_quotes",
    "in_option_terms",
    "LineOverrides",
    "read_overrides",
    "check_against_task",
]


def split_line(line: str) -> list[str]:
    """Split the magic's line on spaces outside quotes and brackets, keeping
    quotes (they matter to Hydra: ``name='a,b'`` is one string).

    >>> split_line("lr=0.1,1 name='a b' seed=range(0, 3) -o ds")
    ['lr=0.1,1', "name='a b'", 'seed=range(0, 3)', '-o', 'ds']
    """
    tokens: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    depth = 0
    prev = ""
    for ch in line:
        if quote is not None:
            cur.append(ch)
            if ch == quote and prev != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
            cur.append(ch)
        elif ch.isspace() and depth == 0:
            if cur:
                tokens.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        prev = ch
    if quote is not None:
        raise UsageError(f"Unclosed quote {quote} in: {line}")
    if cur:
        tokens.append("".join(cur))
    return tokens


def strip_quotes(text: str | None) -> str | None:
    """An option's value without the quotes around it (``-d 'my dir'``).

    >>> strip_quotes("'my dir'"), strip_quotes("plain"), strip_quotes(None)
    ('my dir', 'plain', None)
    """
    if text and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


# the engine's keyword arguments -> the magic's options, for the engine's refusals
_OPTION_TERMS = [
    (re.compile(r"\bresume='force'"), "--resume --force (resume='force')"),
    (re.compile(r"\bresume=True\b"), "--resume"),
    (re.compile(r"\bresume=False\b"), "no --resume"),
    (re.compile(r"\bworking_dir="), "-d/--working-dir "),
    (re.compile(r"(?<![/.])\blauncher='([^']*)'"), r"--launcher \1"),
    (re.compile(r"(?<![/.])\blauncher="), "--launcher "),
    (re.compile(r"\bjobs="), "-j/--jobs "),
    (re.compile(r"\bon_error='([^']*)'"), r"--on-error \1"),
    (re.compile(r"\bon_error="), "--on-error "),
    (re.compile(r"\boverrides=\['([^']*)'\]"), r"\1 on the line"),
    (re.compile(r"^overrides: "), "on the line: "),
]


def in_option_terms(message: str) -> str:
    """An engine message with its keyword arguments named as the magic's options.

    >>> in_option_terms("jobs=2 needs a parallel launcher: launcher='joblib'")
    '-j/--jobs 2 needs a parallel launcher: --launcher joblib'
    """
    return rephrase(message, _OPTION_TERMS)


@dataclass
class LineOverrides:
    """The overrides of a line: ``tokens`` as written (what the engine gets),
    ``names`` (task-level name -> its values), ``single`` (the names given one value,
    not swept), ``where`` (name -> the token that gives it), ``hydra`` (Hydra's own
    settings and deletions, passed through)."""

    tokens: list[str] = field(default_factory=list)
    names: dict[str, list[Any]] = field(default_factory=dict)
    single: set[str] = field(default_factory=set)
    where: dict[str, str] = field(default_factory=dict)
    hydra: list[str] = field(default_factory=list)

    def initial(self) -> dict[str, Any]:
        """The values as the sweep panel takes them: a list sweeps, a value fixes."""
        return {n: (v[0] if n in self.single else list(v)) for n, v in self.names.items()}


_GRAMMAR = (
    "Write name=value, name=a,b,c, name=range(start,stop,step) or name=choice(a,b); quote a "
    "string holding a comma or space: name='a, b'."
)


def read_overrides(tokens: Iterable[str]) -> LineOverrides:
    """Read the line's overrides with the engine's parser; a token that is not one,
    or a name given twice, is a ``UsageError`` naming the token."""
    out = LineOverrides()
    for tok in tokens:
        if "=" not in tok and not tok.startswith("~"):
            raise UsageError(
                f"{tok!r} is not an override: write name=value (fixed) or name=a,b,c / "
                "name=range(0,3) (swept)."
            )
        try:
            o = parse_override(tok)
        except OverrideError as e:
            text = str(e).replace("Cannot parse the override", "Cannot read the override", 1)
            raise UsageError(f"{text}. {_GRAMMAR}") from None
        try:
            values = override_values(o)
        except OverrideError as e:  # an interval: no grid of values
            raise UsageError(str(e)) from None
        out.tokens.append(tok)
        if is_hydra_key(o.key_or_group) or o.is_delete():
            out.hydra.append(tok)
            continue
        name = override_name(o)
        if name in out.names:
            raise UsageError(f"{name!r} is given twice on the line; give it once.")
        out.names[name], out.where[name] = values, tok
        if not o.is_sweep_override():
            out.single.add(name)
    return out


def _in_line_terms(problem: str, line: LineOverrides) -> str:
    """One problem the engine found, naming the token of the line it is about."""
    for name, tok in line.where.items():
        if problem.startswith(f"{name!r} is not a parameter"):
            return problem.replace(f"{name!r}", f"{name!r} (in {tok!r})", 1)
        if problem.startswith(f"{name}: "):
            return f"In {tok!r}: {problem}"
    if problem.startswith("No value for the required"):  # "give x=...." -> "add x=... to the line."
        return re.sub(r": give (.*)\.$", r": add \1 to the line.", problem)
    return problem


def check_against_task(
    fns: Callable[..., Any] | Iterable[Callable[..., Any]], line: LineOverrides, *, base_cfg: Any, label: str
) -> None:
    """The engine's check of the line's values against the task's signature (every
    name a parameter, every value of its type, every required parameter given),
    strict; its refusal as a ``UsageError`` in the line's terms."""
    funcs = [fns] if callable(fns) else list(fns)
    try:
        check_sweep_against_task(funcs, names=line.names, base_cfg=base_cfg, label=label, allow_unknown=False)
    except TaskArgumentError as e:
        problems = [_in_line_terms(p, line) for p in e.problems]
        raise UsageError(" ".join(problems) + f" {e.accepts}") from None
