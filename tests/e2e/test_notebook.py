"""The notebook experience in a real browser (Debian's Chromium), in JupyterLab and
in Notebook 7: every scenario runs in both front ends.

Each test opens one notebook of tests/e2e/notebooks in a fresh workspace (so a
fresh kernel), drives it like a user (runs cells, types in Panel widgets, clicks
buttons), reads what the page shows, and ends by checking that neither the page's
console nor the server log reported an error.
"""

from __future__ import annotations

import re
import time

import pytest
from _lab import Notebook, assert_clean, keep_as_docs_image, parse_status

pytestmark = pytest.mark.e2e


def _watch_status(
    nb: Notebook, cell: int, until, timeout: float = 60, while_running: bool = False
) -> list[dict]:
    """Poll the status line rendered in ``cell``'s output until ``until(status)``;
    return the distinct states seen, in order. ``while_running``: give up as soon
    as the cell has finished (plus one last look)."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    last_look = False
    while time.monotonic() < deadline:
        if while_running and not last_look and not nb.running(cell):
            last_look = True
        st = parse_status(nb.output_text(cell))
        if st is not None and (not seen or st != seen[-1]):
            seen.append(st)
        if st is not None and until(st):
            return seen
        if last_look:
            break
        nb.page.wait_for_timeout(100)  # polling interval, not an assertion
    raise AssertionError(
        f"the status shown in cell {cell} never reached the condition "
        f"({'the cell finished' if last_look else f'{timeout} s'}); states seen: {seen}; "
        f"page errors: {nb.page.errors.problems()[:6]}"
    )


def test_magic_sweep_fills_live(page, jupyter, jupyter_log, open_notebook, shot, clock):
    t0 = time.perf_counter()
    nb = open_notebook("magic_sweep.ipynb")
    assert "READY" in nb.run_print(0, "READY", timeout=90)

    nb.run_cell(1)
    # while the cell blocks, the plot is a PNG updated in place (a bokeh output
    # cannot be re-rendered by update_display_data); the interactive view follows
    nb.wait_plot(1, timeout=60)
    shot("plot-appeared")
    seen = _watch_status(nb, 1, lambda s: s["done"] == s["total"], timeout=60, while_running=True)
    shot("all-done")
    nb.wait_done(1, timeout=30)
    final = nb.wait_output(1, r"8 done")
    assert parse_status(final)["done"] == 8
    intermediate = sorted({s["done"] for s in seen if 0 < s["done"] < 8})
    assert len(intermediate) >= 2, f"fewer than two intermediate states seen: {seen}"
    assert nb.canvases(1) > 0
    assert "Cannot plot" not in final
    assert not nb.output_errors(1)

    out = nb.run_print(2, "DONE")
    assert "DONE 8 FILLED 8 SIZE 8" in out, out
    shot("after")
    print(f"\n[e2e] magic sweep: states seen {[s['done'] for s in seen]}; {time.perf_counter() - t0:.1f} s")
    assert_clean(page, jupyter_log, nb)


def _jobs(nb: Notebook, cell: int) -> int | None:
    m = re.search(r"\b(\d+) jobs?\b", nb.output_text(cell))
    return int(m.group(1)) if m else None


def _wait_jobs(nb: Notebook, cell: int, n: int, timeout: float = 15) -> None:
    nb.wait_output(cell, rf"\b{n} jobs?\b", timeout=timeout)


def test_panel_values_run_cancel(page, jupyter, jupyter_log, open_notebook, shot, clock):
    t0 = time.perf_counter()
    nb = open_notebook("panel_cancel.ipynb")
    assert "READY" in nb.run_print(0, "READY", timeout=90)
    nb.execute(1)
    out = nb.output_locator(1)
    run_btn = out.get_by_role("button", name="Run", exact=True)
    run_btn.wait_for()
    _wait_jobs(nb, 1, 0)  # lr is required and empty: nothing to run yet
    assert run_btn.is_disabled()
    shot("panel-empty")

    # a list of values, typed
    lr = out.locator("input[placeholder^='e.g. 0.01']").nth(0)
    lr.fill("0.1, 0.2, 0.3")
    lr.press("Enter")
    _wait_jobs(nb, 1, 3)
    assert "swept" in nb.output_text(1)

    # a range, through seed's range builder: 0..3 in 4 linear steps
    card = out.locator(".bk-panel-models-layout-Card").nth(1)
    card.locator("button.card-header").click()
    spinners = card.locator(".bk-Spinner input.bk-input")
    for k, value in enumerate(["0", "3", "4"]):
        spinners.nth(k).fill(value)
        spinners.nth(k).press("Enter")
    card.get_by_role("button", name="linear", exact=True).click()
    card.get_by_role("button", name="Fill", exact=True).click()
    _wait_jobs(nb, 1, 12)
    seed = out.locator("input[placeholder^='e.g. 0.01']").nth(1)
    assert seed.input_value().replace(" ", "") == "0,1,2,3"
    shot("panel-12-jobs")
    page.wait_for_function("(b) => !b.disabled", arg=run_btn.element_handle(), timeout=10_000)

    run_btn.click()
    nb.wait_canvas(1, timeout=30)
    seen = _watch_status(nb, 1, lambda s: s["done"] >= 1, timeout=30)
    # the kernel is free while the sweep runs: another cell executes
    free = nb.run_print(2, "FREE-RESULT", timeout=15)
    # the cell ran while the sweep was still going (its result says the run is not done) ...
    assert "('FREE-RESULT', False)" in free, free
    # ... and what it printed reached the page
    assert "FREE True False" in free, f"the cell's print() did not reach the page; its outputs: {free!r}"
    seen += _watch_status(nb, 1, lambda s: s["done"] >= 3, timeout=30)
    run_btn.evaluate("(el) => el.scrollIntoView({block: 'start'})")
    page.mouse.move(5, 400)  # no hover tooltip in the screenshot (it becomes docs/images/panel.png)
    live = shot("panel-running")
    out.get_by_role("button", name="Cancel", exact=True).click()
    # the next cell runs at once: the Cancel click returned and the kernel is idle
    free = nb.run_print(2, "FREE-RESULT", timeout=15)
    assert "FREE-RESULT" in free, free
    msg = nb.wait_output(1, r"Cancelled: \d+ of 12 jobs finished", timeout=30)
    st = _watch_status(nb, 1, lambda s: s["pending"] == 0 and s["running"] == 0, timeout=15)[-1]
    assert st["cancelled"] > 0 and st["done"] + st["cancelled"] == 12, (st, msg)
    shot("panel-cancelled")

    final = nb.run_print(3, "FINAL")
    m = re.search(r"FINAL (.*) FILLED (\d+)", final)
    assert m, final
    counts = dict(kv.split("=") for kv in m.group(1).split())
    counts = {k: int(v) for k, v in counts.items()}
    assert counts["total"] == 12 and counts["pending"] == 0 and counts["running"] == 0, counts
    assert counts["cancelled"] > 0 and counts["done"] >= 3, counts
    assert counts["done"] + counts["cancelled"] == 12, counts
    assert int(m.group(2)) == counts["done"], final
    intermediate = {s["done"] for s in seen if 0 < s["done"] < 12}
    assert intermediate, f"no intermediate state seen: {seen}"
    print(
        f"\n[e2e] panel: states seen {[s['done'] for s in seen]}, final {counts}; "
        f"{time.perf_counter() - t0:.1f} s"
    )
    assert_clean(page, jupyter_log, nb)
    if jupyter.frontend == "lab":
        keep_as_docs_image(live, "panel.png")


def test_panel_save_roundtrip(page, jupyter, jupyter_log, open_notebook, shot, clock):
    (jupyter.root / "results.nc").unlink(missing_ok=True)  # another test in this server saved one
    nb = open_notebook("panel_save.ipynb")
    assert "READY" in nb.run_print(0, "READY", timeout=90)
    nb.execute(1)
    out = nb.output_locator(1)
    _wait_jobs(nb, 1, 4)
    out.get_by_role("button", name="Run", exact=True).click()
    nb.wait_output(1, r"Finished: 4 jobs", timeout=30)
    nb.wait_canvas(1)
    path = out.locator("input[placeholder='results.nc']")
    path.fill("results.nc")
    path.press("Enter")
    out.get_by_role("button", name="Save", exact=True).click()
    text = nb.wait_output(1, r"Wrote \S*results\.nc", timeout=30)
    assert "could not" not in text.lower()
    shot("saved")
    res = nb.run_print(2, "IDENTICAL")
    assert "EXISTS True" in res, res
    assert "IDENTICAL True" in res, res
    assert_clean(page, jupyter_log, nb)


def _finished_jobs(sweep_dir) -> int:
    index = sweep_dir / ".mushin" / "index.jsonl"
    return len(index.read_text().splitlines()) if index.exists() else 0


def test_interrupt_blocking_magic_keeps_finished(page, jupyter, jupyter_log, open_notebook, shot, clock):
    nb = open_notebook("interrupt.ipynb")
    assert "READY" in nb.run_print(0, "READY", timeout=90)
    nb.run_cell(1)
    nb.wait_plot(1, timeout=60)
    # wait for two finished jobs in the sweep's index (what the page shows is tested elsewhere)
    sweep_dir = jupyter.root / "interrupt_sweep"
    deadline = time.monotonic() + 60
    while _finished_jobs(sweep_dir) < 2:
        assert time.monotonic() < deadline, "fewer than 2 jobs finished in 60 s"
        assert nb.running(1), nb.output_errors(1)
        page.wait_for_timeout(100)  # polling interval
    shot("before-interrupt")
    # the toolbar's stop button (notebook:interrupt-kernel)
    page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:interrupt-kernel']").click()
    nb.wait_done(1, timeout=30)
    errors = nb.output_errors(1)
    assert any(e.startswith("KeyboardInterrupt") for e in errors), errors
    shot("interrupted")
    res = nb.run_print(2, "BOUND")
    m = re.search(r"BOUND Dataset DONE (\d+) CANCELLED (\d+) PENDING (\d+) FILLED (\d+) SIZE 12", res)
    assert m, res
    done, cancelled, pending, filled = map(int, m.groups())
    assert done >= 2 and filled == done, res
    assert cancelled > 0 and pending == 0 and done + cancelled == 12, res
    print(f"\n[e2e] interrupt: bound {done} done, {cancelled} cancelled")
    assert_clean(page, jupyter_log, nb, skip_cells=(1,))  # cell 1 ends in the expected KeyboardInterrupt
