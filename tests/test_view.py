"""The live view: throttled redraws, plots per number of swept dims, status, and
updates that reach the page while a %%mushin_sweep cell blocks (real kernel)."""

from __future__ import annotations

import json
import re
import sys
import threading

import numpy as np
import pytest

from mushin_nb import MultiRunMetricsWorkflow, multirun

pytest.importorskip("panel")
pytest.importorskip("hvplot")

GATE = threading.Event()


class Gated(MultiRunMetricsWorkflow):
    """Jobs wait for GATE, so a test decides when they finish (in-process launcher)."""

    @staticmethod
    def task(x: int) -> dict:
        GATE.wait(30)
        return dict(y=x * x)


class Grid(MultiRunMetricsWorkflow):
    @staticmethod
    def task(a: float, b: int, c: str = "u") -> dict:
        if a == 2.0 and b == 1:
            raise ValueError("bad cell")
        return dict(score=a * b + (c == "v"), curve=np.arange(3) * a)


@pytest.fixture()
def gate():
    GATE.clear()
    yield GATE
    GATE.set()


def test_events_are_coalesced_into_one_redraw_per_tick(tmp_path, gate):
    from mushin_nb.notebook.view import LiveView

    run = Gated().start(x=multirun(list(range(6))), working_dir=str(tmp_path))
    view = LiveView(run, interval=None)  # no timer thread: the test ticks
    assert view.redraws == 1  # the first draw
    gate.set()
    run.wait()
    assert view.events == 6  # six jobs finished after the view subscribed
    assert view.redraws == 1  # events only mark the view dirty
    assert view.tick() is True
    assert view.redraws == 2  # six events, one redraw
    assert view.tick() is False  # nothing new
    assert view.redraws == 2
    assert "6 done" in view._summary.object


def test_timer_thread_redraws_at_most_once_per_interval(tmp_path, gate):
    from mushin_nb.notebook.view import LiveView

    run = Gated().start(x=multirun(list(range(8))), working_dir=str(tmp_path))
    # an interval longer than any test: the only tick is the one when the run ends
    view = LiveView(run, interval=3600)
    gate.set()
    run.wait()
    view.join(60)
    assert view.events == 8
    assert view.redraws == 2  # the first draw + one at the end, not one per job
    assert view._progress.value == 8 and view._progress.max == 8
    assert not view._cancel.visible  # the run is over


def test_two_dims_heatmap_lines_status_and_repr(tmp_path):
    import holoviews as hv

    from mushin_nb.notebook.view import STATUS_ORDER, LiveView

    wf = Grid()
    run = wf.start(a=multirun([1.0, 2.0]), b=multirun([0, 1, 2]), working_dir=str(tmp_path))
    run.wait()
    view = LiveView(run, metric="score")
    assert view.param.metric.objects == ["score", "curve"]
    plot = view.plot_element
    assert isinstance(plot, hv.HeatMap)
    assert [d.name for d in plot.kdims] == ["a", "b"]
    view.kind = "lines"  # lines grouped by the other swept parameter
    plot = view.plot_element
    assert isinstance(plot, hv.Overlay)
    curves = plot.Curve if hasattr(plot, "Curve") else None
    assert curves is not None
    assert sorted(view.plot_element.traverse(lambda e: e.label, [hv.Curve])) is not None
    # the failed cell is visibly distinct: its own state (and colour) in the status grid,
    # whose cells are labelled like the heatmap's (categorical: the values as text)
    st = view.make_status_plot(run.dataset).dframe()
    failed = st[st["status"] == "failed"]
    assert len(failed) == 1 and failed.iloc[0]["a"] == "2.0" and failed.iloc[0]["b"] == "1"
    assert set(st["status"]) == {"done", "failed"} and set(st["status"]) <= set(STATUS_ORDER)
    assert "1 failed" in view._summary.object and "5 done" in view._summary.object
    # the Dataset's own HTML repr, beside the plot
    assert "xr-wrap" in view._repr.object and "score" in view._repr.object


class Uneven(MultiRunMetricsWorkflow):
    @staticmethod
    def task(lr: float, seed: int) -> dict:
        if lr == 1.0 and seed == 1:
            raise ValueError("bad cell")
        return dict(acc=lr * (seed + 1))


def _factors(rng):
    return [str(f) for f in rng.factors] if hasattr(rng, "factors") else type(rng).__name__


def test_state_grid_shares_the_heatmaps_categorical_axes_and_has_a_legend(tmp_path):
    """Values 0.5, 1.0, 2.0 (unevenly spaced): the state grid has the heatmap's categorical
    axes (one equal cell per value, the same factors), in the figures bokeh draws; its
    colours are explained by a legend of the state names, not by a title."""
    import holoviews as hv
    from bokeh.models import Legend

    from mushin_nb.notebook.view import STATUS_COLORS, STATUS_ORDER, LiveView

    ds = Uneven().start(lr=multirun([0.5, 1.0, 2.0]), seed=multirun([0, 1]), working_dir=str(tmp_path)).wait()
    view = LiveView(ds, metric="acc", interval=None)
    main, grid = hv.render(view.plot_element), hv.render(view.status_element)
    assert _factors(main.x_range) == _factors(grid.x_range) == ["0.5", "1.0", "2.0"]
    assert _factors(main.y_range) == _factors(grid.y_range) == ["0", "1"]
    legends = [m for m in grid.above + grid.right + grid.center if isinstance(m, Legend)]
    assert len(legends) == 1
    labels = [item.label.value for item in legends[0].items]
    assert labels == list(STATUS_ORDER)
    swatches = [item.renderers[0].glyph.fill_color for item in legends[0].items]
    assert swatches == [STATUS_COLORS[s] for s in STATUS_ORDER]
    # bokeh draws a legend swatch from the renderer's first row: each has one (off the grid)
    assert all(len(item.renderers[0].data_source.data["x"]) == 1 for item in legends[0].items)
    assert not (grid.title and grid.title.text)  # no title to cut
    # each cell coloured by its state: the failed one red
    cells = grid.renderers[0]
    data = cells.data_source.data
    failed = [i for i, s in enumerate(data["zvalues"]) if s == "failed"]
    assert [(data["lr"][i], data["seed"][i]) for i in failed] == [("1.0", "1")]
    mapper = cells.glyph.fill_color.transform
    assert dict(zip(mapper.factors, mapper.palette))["failed"] == STATUS_COLORS["failed"]
    # one swept parameter: the grid's x axis is the same categorical one, one row of cells
    one = LiveView(ds.sel(seed=0), metric="acc", interval=None)
    assert _factors(hv.render(one.status_element).x_range) == ["0.5", "1.0", "2.0"]


def test_the_legend_is_added_once_however_often_the_grid_is_redrawn(tmp_path):
    import holoviews as hv
    from bokeh.models import Legend

    from mushin_nb.notebook.view import LiveView

    ds = Uneven().start(lr=multirun([0.5, 1.0, 2.0]), seed=multirun([0, 1]), working_dir=str(tmp_path)).wait()
    view = LiveView(ds, metric="acc", interval=None)
    pipe = hv.streams.Pipe(data=view.status_element)
    plot = hv.renderer("bokeh").get_plot(hv.DynamicMap(lambda data: data, streams=[pipe]))
    for _ in range(3):  # what a redraw does: a new element through the stream
        view.redraw()
        pipe.send(view.status_element)
    fig = plot.state
    assert len([m for m in fig.right if isinstance(m, Legend)]) == 1
    assert len(fig.renderers) == 1 + 5  # the cells, and one swatch per state


def test_array_metric_draws_lines_over_its_own_dim(tmp_path):
    import holoviews as hv

    from mushin_nb.notebook.view import LiveView

    run = Grid().start(a=multirun([1.0, 3.0]), b=1, working_dir=str(tmp_path))
    run.wait()
    view = LiveView(run, metric="curve")
    plot = view.plot_element
    assert isinstance(plot, hv.NdOverlay)
    assert plot.kdims[0].name == "a" and sorted(plot.keys()) == [1.0, 3.0]
    curve = plot[3.0]
    assert curve.kdims[0].name == "curve_dim0"
    assert curve.dimension_values("curve").tolist() == [0.0, 3.0, 6.0]


def test_three_dims_select_the_others_with_widgets(tmp_path):
    from mushin_nb.notebook.view import LiveView

    run = Grid().start(
        a=multirun([1.0, 3.0]), b=multirun([0, 2]), c=multirun(["u", "v"]), working_dir=str(tmp_path)
    )
    run.wait()
    view = LiveView(run, metric="score")
    assert view._sel["c"].visible and not view._sel["a"].visible and not view._sel["b"].visible
    before = view.plot_element.dimension_values("score").tolist()
    view._sel["c"].value = "v"  # pick another slice: the plot follows
    after = view.plot_element.dimension_values("score").tolist()
    assert [round(x - y, 6) for x, y in zip(after, before)] == [1.0] * 4


def test_pending_and_running_cells_show_before_results(tmp_path, gate):
    from mushin_nb.notebook.view import LiveView

    run = Gated().start(x=multirun([1, 2, 3]), working_dir=str(tmp_path))
    view = LiveView(run, interval=None)
    states = set(view.make_status_plot(run.dataset).dimension_values("status"))
    assert states <= {"pending", "running"} and "pending" in states
    assert "waiting for the first result" in str(view.plot_element.opts.get().kwargs.get("title", ""))
    gate.set()
    run.wait()
    view.tick()
    assert set(view.make_status_plot(run.dataset).dimension_values("status")) == {"done"}


def test_cancel_button_cancels_the_run(tmp_path, gate):
    from mushin_nb.notebook.view import LiveView

    run = Gated().start(x=multirun([1, 2, 3, 4]), working_dir=str(tmp_path))
    view = LiveView(run, interval=None, show_cancel=True)
    assert view._cancel.visible
    view._cancel.clicks += 1
    gate.set()
    ds = run.wait()
    view.tick(force=True)
    assert run.status["cancelled"] >= 1
    assert "cancelled" in set(ds["status"].values.tolist())
    assert not view._cancel.visible


def test_static_dataset_and_run_view(tmp_path):
    import panel as pn

    from mushin_nb.notebook.view import LiveView

    run = Grid().start(a=multirun([1.0, 3.0]), b=1, working_dir=str(tmp_path))
    ds = run.wait()
    layout = run.view(metric="score")
    assert isinstance(layout, pn.Column)
    view = LiveView(ds.drop_vars("status"), metric="score")  # a Dataset, e.g. loaded from NetCDF
    assert view.swept == ["a"] and view.tick() is False
    assert view.plot_element.dimension_values("score").tolist()[:2] == [1.0, 3.0]


def test_redraws_update_the_plots_in_place(tmp_path, gate):
    """While the plot keeps its structure, a redraw sends the new element through
    a stream to the DynamicMap already shown (no bokeh model is replaced); a new
    metric or axis builds a new one."""
    import holoviews as hv

    from mushin_nb.notebook.view import LiveView

    run = Grid().start(a=multirun([1.0, 3.0]), b=multirun([0, 1]), working_dir=str(tmp_path))
    run.wait()
    view = LiveView(run, metric="score", interval=None)
    shown, status_shown = view._plot.object, view._status_plot.object
    assert isinstance(shown, hv.DynamicMap) and isinstance(view.plot_element, hv.HeatMap)
    first = view.plot_element
    view.tick(force=True)
    assert view._plot.object is shown and view._status_plot.object is status_shown
    assert view.plot_element is not first  # a new element, in the same DynamicMap
    assert shown[()].dimension_values("score").tolist() == first.dimension_values("score").tolist()
    view.metric = "curve"  # another structure: a new DynamicMap
    assert view._plot.object is not shown and isinstance(view.plot_element, hv.NdOverlay)


def test_render_png_marks_cells_without_results(tmp_path, gate):
    from mushin_nb.notebook.view import render_png

    run = Gated().start(x=multirun([1, 2, 3]), working_dir=str(tmp_path))
    png = render_png(run.dataset, title="Gated")  # nothing finished: only marked cells
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    gate.set()
    ds = run.wait()
    assert render_png(ds)[:4] == b"\x89PNG"
    grid = Grid().start(a=multirun([1.0, 2.0]), b=multirun([0, 1, 2]), working_dir=str(tmp_path / "g")).wait()
    for metric in ("score", "curve"):  # a heatmap with a failed cell; lines of an array metric
        assert render_png(grid, metric=metric, title="Grid")[:4] == b"\x89PNG"


def test_cell_states_are_the_engines():
    from mushin_nb._store import STATES
    from mushin_nb.notebook.view import STATUS_COLORS, STATUS_ORDER

    assert STATUS_ORDER == tuple(STATES) and set(STATUS_COLORS) == set(STATES)


def test_static_and_interactive_plots_choose_the_same_kind(tmp_path):
    import holoviews as hv

    from mushin_nb.notebook.plots import choose_kind, render_png
    from mushin_nb.notebook.view import LiveView

    ds = Grid().start(a=multirun([1.0, 2.0]), b=multirun([0, 1, 2]), working_dir=str(tmp_path)).wait()
    view = LiveView(ds, metric="score", kind="lines", interval=None)
    assert (
        isinstance(view.plot_element, hv.Overlay) and choose_kind(view.context(), view.kind).name == "lines"
    )
    # the static renderer of the same kind: lines grouped by b, not the heatmap
    lines, heat = render_png(ds, metric="score", kind="lines"), render_png(ds, metric="score")
    assert lines[:4] == b"\x89PNG" and lines != heat
    with pytest.raises(ValueError, match="'nope' is not a plot kind.*'heatmap', 'lines'"):
        render_png(ds, metric="score", kind="nope")


def test_a_registered_plot_kind_renders_both_ways(tmp_path):
    """Adding a kind is registering one spec: the live view offers it and draws it with
    its interactive renderer; a blocking cell's PNG comes from its static renderer."""
    import holoviews as hv

    from mushin_nb.notebook.plots import PlotKind, register_plot_kind, render_png, unregister_plot_kind
    from mushin_nb.notebook.view import BlockingDisplay, LiveView

    seen: list[tuple[str, str, str, tuple]] = []

    def interactive(ctx):
        da = ctx.data(keep=[ctx.x])
        seen.append(("hv", ctx.metric, ctx.x, tuple(ctx.selection.items())))
        return hv.Bars((da[ctx.x].values, da.values), kdims=[ctx.x], vdims=[ctx.metric])

    def static(ctx, ax):
        da = ctx.data(keep=[ctx.x])
        seen.append(("mpl", ctx.metric, ctx.x, tuple(ctx.selection.items())))
        ax.bar([str(v) for v in da[ctx.x].values], np.nan_to_num(da.values), color="#7c3aed")

    kind = PlotKind("bars_over_x", lambda ctx: len(ctx.swept) >= 1, interactive, static)
    register_plot_kind(kind)
    try:
        with pytest.raises(ValueError, match="registered already"):
            register_plot_kind(kind)
        run = Grid().start(a=multirun([1.0, 2.0]), b=multirun([0, 1, 2]), working_dir=str(tmp_path))
        ds = run.wait()
        view = LiveView(run, metric="score", kind="bars_over_x", interval=None)
        assert "bars_over_x" in view.param.kind.objects and view._kind_w.visible
        assert isinstance(view.plot_element, hv.Bars) and view.plot_element.kdims[0].name == "a"
        assert ("hv", "score", "a", (("b", 0),)) in seen
        png = render_png(ds, metric="score", kind="bars_over_x")
        assert ("mpl", "score", "a", (("b", 0),)) in seen
        assert png[:4] == b"\x89PNG" and png != render_png(ds, metric="score")
        # a blocking cell shows the same kind: the PNG while it blocks, the view after
        seen.clear()
        shown = BlockingDisplay(run, metric="score", kind="bars_over_x", interval=None)
        assert shown.error is None and [s[0] for s in seen] == ["mpl"]
        after = shown.finish()
        assert after is not None and isinstance(after.plot_element, hv.Bars) and seen[-1][0] == "hv"
    finally:
        unregister_plot_kind("bars_over_x")
    assert "bars_over_x" not in LiveView(ds, interval=None).param.kind.objects


@pytest.mark.slow
def test_redraws_run_on_the_kernels_main_thread(tmp_path):
    """In a real kernel the view's timer thread only schedules redraws: they run
    on the kernel's main thread (where Panel also handles the page's messages),
    when it is free, e.g. while a cell awaits."""
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "import threading, asyncio, time\n"
        "from mushin_nb import MultiRunMetricsWorkflow, multirun\n"
        "from mushin_nb.notebook.view import LiveView\n"
        "gate = threading.Event()\n"
        "class Slow(MultiRunMetricsWorkflow):\n"
        "    @staticmethod\n"
        "    def task(x: int) -> dict:\n"
        "        gate.wait(60)\n"
        "        time.sleep(0.2)\n"
        "        return dict(y=x)\n"
        f"run = Slow().start(x=multirun([1, 2, 3, 4]), working_dir={str(tmp_path / 'sweep')!r})\n"
        "view = LiveView(run, interval=0.05)\n"
        "threads = set()\n"
        "view.add_listener(lambda ds: threads.add(threading.current_thread().name))\n"
        "view.panel()",
        "assert view._thread is not None and not run.done\n"
        "gate.set()  # the jobs finish while this cell awaits: the kernel's loop is free\n"
        "while not run.done or view._thread.is_alive() or not view._idle.is_set():\n"
        "    await asyncio.sleep(0.05)\n"
        "print('THREADS', sorted(threads), 'REDRAWS', view.redraws, 'DONE', run.status['done'], view.error)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "THREADS ['MainThread']" in text and "DONE 4 None" in text, text
    redraws = int(text.split("REDRAWS ")[1].split()[0])
    assert redraws >= 2, text  # the first draw and at least the one at the end


@pytest.mark.slow
def test_blocking_magic_pushes_view_updates_to_the_page(tmp_path):
    """A real kernel (nbclient): while the %%mushin_sweep cell blocks, the view's
    redraws reach the page as update_display_data messages (kernel -> page only)."""
    import nbformat
    from nbclient import NotebookClient

    cells = [
        "%load_ext mushin_nb\nimport time",
        f"%%mushin_sweep x=1,2,3,4 -o ds -d {tmp_path / 'sweep'}\n"
        "def task(x: int) -> dict:\n    time.sleep(0.6)\n    return dict(y=x * x)",
        "print(ds.status.values.tolist(), ds.y.values.tolist())",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])

    class Recorder(NotebookClient):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.updates: list[tuple[int, str]] = []

        def process_message(self, msg, cell, cell_index):
            if msg["msg_type"] == "update_display_data":
                self.updates.append((cell_index, json.dumps(msg["content"]["data"])))
            return super().process_message(msg, cell, cell_index)

    client = Recorder(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    assert "['done', 'done', 'done', 'done'] [1, 4, 9, 16]" in nb.cells[2].outputs[0]["text"]
    counts = [sorted(set(re.findall(r"(\d+) done", data))) for i, data in client.updates if i == 1]
    finished_seen = {int(n) for c in counts for n in c}
    # several redraws were sent from the blocked cell, including intermediate ones
    assert len(counts) >= 2
    assert 4 in finished_seen and finished_seen & {0, 1, 2, 3}, finished_seen
    # BokehJS and Panel's JS are inlined in the notebook (so plots render offline),
    # and no extension whose JS only a CDN serves (e.g. Tabulator) is requested
    outs = nb.cells[1].outputs
    inline = [o for o in outs if len(o.get("data", {}).get("application/javascript", "")) > 1_000_000]
    assert inline, "no inline BokehJS bundle in the output"
    assert "tabulator.min.js" not in json.dumps(outs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


class Paced(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int) -> dict:
        import time

        time.sleep(0.03)
        return dict(y=x)


def test_slow_redraws_come_less_often_and_the_end_is_drawn(tmp_path):
    """A redraw holds the GIL that an in-process sweep needs: the longer redraws take,
    the less often they come (at most VIEW_SHARE of the time), whatever ``interval``
    asks; the last one, when the run ends, shows the final state."""
    import time

    from mushin_nb.notebook import _live
    from mushin_nb.notebook.view import LiveView

    run = Paced().start(x=multirun(list(range(60))), working_dir=str(tmp_path), progress=False)
    t0 = time.monotonic()
    view = LiveView(run, interval=0.01)
    view.add_listener(lambda ds: time.sleep(0.05))  # each redraw takes >= 50 ms
    run.wait()
    view.join(60)
    elapsed = time.monotonic() - t0
    # every 0.01 s asked: about one redraw per 0.06 s unthrottled (30 or more here);
    # each took >= 50 ms, so the next came >= 50 ms / VIEW_SHARE later (or at the end)
    assert view.redraws <= 2 + elapsed / (0.05 / _live.VIEW_SHARE) + 1, (view.redraws, elapsed)
    assert view.drawn_status == run.status and run.status["done"] == 60
    assert view.plot_element is not None and not view.error
