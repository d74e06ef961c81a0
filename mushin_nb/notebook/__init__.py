"""The notebook layer: ``%%mushin_sweep`` (``magic``), the sweep panel (``panel``,
``robustness``), the live view (``view``) and its plot kinds (``plots``), and
``mushin-nb serve`` (``serve``).

The public modules are the faces; the work is in private ones, one job each:
``_line`` (the magic's line) and ``_cell`` (its body), ``_sweep_panel`` and ``_picker``
(the panel), ``_live``, ``_blocking``, ``_threads`` and ``_status`` (the view),
``_kinds`` and ``_mpl`` (the built-in plot kinds), ``_params`` (tasks and typed
values), ``_deps`` (loading panel and hvplot). The engine is reached through its
public names only; third-party internals only through :mod:`mushin_nb._compat`.

Nothing here imports panel or hvplot until it is used.
"""
