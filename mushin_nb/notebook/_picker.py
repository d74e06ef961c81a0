"""One task parameter's values in the sweep panel (:class:`ValuePicker`)."""

from __future__ import annotations

import html
from typing import Any

import param

from . import _deps
from ._params import TaskParam, coerce, format_values, parse_values

__all__ = ["ValuePicker"]


class ValuePicker(param.Parameterized):
    """The values of one task parameter: one value is fixed, several are swept.

    Numbers (``float``/``int``): an editable list in Hydra's grammar
    (``0.01, 0.1, 1`` or ``range(0, 10, 2)``) and a range builder (start, stop,
    count, linear or log). ``bool``: checkboxes. ``Literal``/``Enum``: a
    multi-select. Strings and untyped: a list (shown as tags).

    Examples
    --------
    >>> from mushin_nb.notebook._params import task_params
    >>> def task(lr: float) -> dict: ...
    >>> (lr,), _ = task_params(task)
    >>> picker = ValuePicker(lr, [0.1, 1.0])
    >>> picker.values, picker.swept
    ([0.1, 1.0], True)
    >>> picker.input.value = "range(0, 3)"  # typed in Hydra's grammar, read as floats
    >>> picker.values
    [0.0, 1.0, 2.0]
    """

    values = param.List(default=[], doc="The values picked (typed).")
    error = param.String(default="", doc="Why the text cannot be read ('' if it can).")

    def __init__(self, tp: TaskParam, initial: Any = None, **params: Any) -> None:
        super().__init__(**params)
        pn = _deps.pn()
        self.tp = tp
        self.name_ = tp.name
        label = tp.describe() + ("  (required)" if tp.required else "")
        self.range_start: Any = None
        self.range_stop: Any = None
        self.range_count: Any = None
        self.range_scale: Any = None
        self.fill_button: Any = None
        self.range_builder: Any = None
        if initial is None:
            init = [] if tp.required else [tp.default]
        elif isinstance(initial, (list, tuple, range)) or type(initial).__name__ == "multirun":
            init = list(initial)
        else:
            init = [initial]
        if tp.kind == "bool":
            self.input = pn.widgets.CheckBoxGroup(
                **_deps.label(label),
                options={"True": True, "False": False},
                value=[bool(v) for v in init],
                inline=True,
            )
        elif tp.kind == "choice":
            self.input = pn.widgets.MultiChoice(
                **_deps.label(label), options=list(tp.choices), value=[coerce(v, tp) for v in init], width=300
            )
        else:
            self.input = pn.widgets.TextInput(
                **_deps.label(label),
                value=format_values(init) if init else "",
                placeholder="e.g. 0.01, 0.1, 1  or  range(0, 10, 2)"
                if tp.kind in ("float", "int")
                else "e.g. a, b, 'c,d'",
                width=300,
            )
        if tp.kind in ("float", "int"):
            num = pn.widgets.IntInput if tp.kind == "int" else pn.widgets.FloatInput
            self.range_start = num(**_deps.label("start"), value=0 if tp.kind == "int" else 0.001, width=90)
            self.range_stop = num(**_deps.label("stop"), value=10 if tp.kind == "int" else 1.0, width=90)
            self.range_count = pn.widgets.IntInput(**_deps.label("count"), value=5, start=1, width=70)
            self.range_scale = pn.widgets.RadioButtonGroup(
                options=["linear", "log"], value="log" if tp.kind == "float" else "linear", margin=(27, 5)
            )
            self.fill_button = pn.widgets.Button(**_deps.label("Fill"), width=60, margin=(27, 5))
            self.fill_button.on_click(lambda e: self.fill_range())
            self.range_builder = pn.Card(
                pn.Row(
                    self.range_start, self.range_stop, self.range_count, self.range_scale, self.fill_button
                ),
                title="range builder",
                collapsed=True,
                margin=(0, 5),
            )
        self.badge = pn.pane.HTML("", margin=(25, 5), width=170)
        self.tags = pn.pane.HTML("", margin=(0, 10), visible=tp.kind in ("str", "any"))
        self.input.param.watch(self._read, "value")
        self._read()

    # -------------------------------------------------------------- state
    @property
    def swept(self) -> bool:
        """Several values: the parameter is a dimension of the sweep."""
        return len(self.values) > 1

    @property
    def missing(self) -> bool:
        """No value picked (Run is disabled until there is one)."""
        return not self.values

    def _read(self, *events: Any) -> None:
        raw = self.input.value
        try:
            if isinstance(raw, str):
                vals = [coerce(v, self.tp) for v in parse_values(raw, name=self.tp.name)]
            else:
                vals = [coerce(v, self.tp) for v in raw]
            seen: list[Any] = []
            for v in vals:
                if any(type(v) is type(s) and v == s for s in seen):
                    raise ValueError(f"{self.tp.name}: {v!r} is given twice; give each value once.")
                seen.append(v)
            self.error = ""
            self.values = seen
        except ValueError as e:
            self.error = str(e)
            self.values = []
        self._show()

    def _show(self) -> None:
        if self.error:
            text, color = "cannot read", "#dc2626"
        elif self.missing:
            text, color = ("required: no value" if self.tp.required else "no value"), "#dc2626"
        elif self.swept:
            text, color = f"swept &middot; {len(self.values)} values", "#2563eb"
        else:
            text, color = "fixed", "#6b7280"
        self.badge.object = (
            f'<span style="background:{color};color:white;border-radius:4px;padding:2px 8px">{text}</span>'
        )
        if self.tags.visible:
            self.tags.object = "".join(
                '<span style="border:1px solid #999;border-radius:10px;padding:0 6px;margin-right:3px">'
                f"{html.escape(repr(v))}</span>"
                for v in self.values
            )

    def set_values(self, values: Any) -> None:
        """Set the picked values from code (a list sweeps, a scalar fixes)."""
        vals = list(values) if isinstance(values, (list, tuple, range)) else [values]
        if isinstance(self.input.value, str):
            self.input.value = format_values(vals)
        else:
            self.input.value = [coerce(v, self.tp) for v in vals]

    def fill_range(self) -> None:
        """Fill the list from the range builder (start, stop, count, linear/log)."""
        import numpy as np

        start, stop, count, scale = self.range_start, self.range_stop, self.range_count, self.range_scale
        if start is None or stop is None or count is None or scale is None:
            raise TypeError(f"{self.tp.name}: a {self.tp.kind} parameter has no range builder")
        a, b, n = start.value, stop.value, int(count.value or 1)
        if scale.value == "log":
            if a is None or b is None or a <= 0 or b <= 0:
                self.error = f"{self.tp.name}: a log range needs start > 0 and stop > 0."
                self._show()
                return
            vals = np.geomspace(a, b, n)
        else:
            vals = np.linspace(a, b, n)
        if self.tp.kind == "int":
            out: list[Any] = sorted({int(round(v)) for v in vals})
        else:
            out = [float(f"{v:.6g}") for v in vals]
        self.set_values(out)

    def value_for_run(self) -> Any:
        """What ``workflow.start`` gets: ``multirun([...])`` if swept, else the value."""
        from hydra_zen import multirun

        return multirun(list(self.values)) if self.swept else self.values[0]

    def panel(self) -> Any:
        """The picker's layout: the input, its badge, the tags or range builder."""
        pn = _deps.pn()
        row = pn.Row(self.input, self.badge)
        items: list[Any] = [row]
        if self.tags.visible:
            items.append(self.tags)
        if self.range_builder is not None:
            items.append(self.range_builder)
        return pn.Column(*items, margin=(0, 0, 8, 0))
