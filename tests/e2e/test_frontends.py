"""The front ends beyond the basic scenarios (which test_notebook.py runs in JupyterLab and
Notebook 7): ``%%mushin_sweep --background`` with cells executing while the sweep runs,
Panel over ipywidgets (``pn.extension(comms="ipywidgets")`` through jupyter_bokeh: the
path VS Code and Colab take), and the offline check of a whole panel sweep.

Every test (here and in the other modules) fails on any request that leaves 127.0.0.1
(the ``page`` fixture records and aborts them); the offline test also checks that the
late "sweep is running" alert is styled, and writes the count it saw to
test-artifacts/e2e/offline-requests-<frontend>.txt.
"""

from __future__ import annotations

import re
import time

import pytest
from _lab import DEEP_TEXT_JS, Notebook, assert_clean, notebook_variant, parse_status

pytestmark = pytest.mark.e2e


def _statuses_while(nb: Notebook, view_cell: int, busy_cell: int, timeout: float = 60) -> list[dict]:
    """The distinct statuses cell ``view_cell`` shows while cell ``busy_cell`` runs."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and nb.running(busy_cell):
        st = parse_status(nb.output_text(view_cell))
        if st is not None and (not seen or st != seen[-1]):
            seen.append(st)
        nb.page.wait_for_timeout(100)  # polling interval
    return seen


def _wait_status(nb: Notebook, cell: int, until, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = parse_status(nb.output_text(cell))
        if st is not None and until(st):
            return st
        nb.page.wait_for_timeout(100)  # polling interval
    raise AssertionError(f"cell {cell}'s status never reached the condition; last {st}")


def _wait_printed(nb: Notebook, cell: int, text: str, timeout: float = 15) -> str:
    """What cell ``cell`` printed once it contains ``text`` (outputs may arrive after
    the execution reply); whatever it is at timeout."""
    deadline = time.monotonic() + timeout
    while text not in (out := nb.printed(cell)) and time.monotonic() < deadline:
        nb.page.wait_for_timeout(100)  # polling interval
    return out


def test_background_view_updates_and_cells_run(page, jupyter, jupyter_log, open_notebook, shot, clock):
    nb = open_notebook("background.ipynb")
    assert "READY" in nb.run_print(0, "READY", timeout=90)
    nb.run_cell(1)
    nb.wait_done(1, timeout=60)  # --background: the cell returns while the sweep runs
    nb.wait_canvas(1, timeout=60)
    first = parse_status(nb.wait_output(1, r"\b[1-9]\d* done", timeout=60))
    assert first is not None and first["done"] < 20, first
    # another cell executes while the sweep runs ...
    free = nb.run_print(2, "FREE", timeout=30)
    m = re.search(r"FREE (True|False) (\d+)", free)
    assert m and m.group(1) == "False", free
    shot("cell-ran-while-sweeping")
    # ... and the view goes on updating after it (redraws between cells)
    later = _wait_status(nb, 1, lambda st: st["done"] > first["done"], timeout=60)
    # a cell that waits for the run: when wait() returns, bg is already the final Dataset
    nb.run_cell(3)
    seen = _statuses_while(nb, 1, 3)
    nb.wait_done(3, timeout=120)
    out = _wait_printed(nb, 3, "FINAL")
    assert "FINAL 20 20 20 True" in out, out
    final = parse_status(nb.wait_output(1, r"\b20 done", timeout=60))
    assert final["done"] == 20 and final["total"] == 20, final
    assert nb.canvases(1) > 0
    shot("finished")
    print(
        f"\n[e2e] background ({jupyter.frontend}): {first['done']} -> {later['done']} done, {len(seen)} states"
    )
    assert_clean(page, jupyter_log, nb)


@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)
def test_panel_over_ipywidgets(page, jupyter, jupyter_log, open_notebook, shot, clock, artifacts):
    """The path VS Code and Colab use: Panel renders through jupyter_bokeh's ipywidget,
    and its messages go over ipywidgets' comms (forced here in JupyterLab)."""
    (jupyter.root / "results.nc").unlink(missing_ok=True)  # another test in this server saved one
    nb = open_notebook(notebook_variant(jupyter, "panel_save.ipynb", "ipywidgets"))
    assert "READY" in nb.run_print(0, "READY", timeout=90)
    nb.execute(1)
    out = nb.output_locator(1)
    # rendered by the widget manager (a jupyter_bokeh BokehModel), not by the pyviz renderer
    page.wait_for_function(
        "(el) => !!el.querySelector('.jupyter-widgets, .widget-output, [class*=\"jp-OutputArea-output\"]')",
        arg=out.element_handle(),
        timeout=30_000,
    )
    assert page.evaluate(
        """(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs.toJSON()
                 .some((o) => o.data && 'application/vnd.jupyter.widget-view+json' in o.data)""",
        1,
    ), "the panel was not rendered as an ipywidget"
    nb.wait_output(1, r"\b4 jobs\b", timeout=30)
    out.get_by_role("button", name="Run", exact=True).click()
    nb.wait_output(1, r"Finished: 4 jobs", timeout=60)
    nb.wait_canvas(1, timeout=30)
    path = out.locator("input[placeholder='results.nc']")
    path.fill("results.nc")
    path.press("Enter")
    out.get_by_role("button", name="Save", exact=True).click()
    nb.wait_output(1, r"Wrote \S*results\.nc", timeout=30)
    shot("saved")
    res = nb.run_print(2, "IDENTICAL")
    assert "EXISTS True" in res and "IDENTICAL True" in res, res
    # over ipywidgets Panel renders without a comm and would link every component's CSS
    # from its CDN (offline: unstyled); mushin_nb inlines it (panel-ipywidget-inline-css)
    n = len(page.external.urls)
    (artifacts / "offline-requests-ipywidgets.txt").write_text(
        f"external requests seen by the offline check (lab, Panel over ipywidgets): {n}\n"
        + "".join(f"{u}\n" for u in page.external.urls)
    )
    (artifacts / "ipywidgets-cdn-css.txt").unlink(missing_ok=True)  # the gap it recorded is fixed
    print(f"\n[e2e] offline (ipywidgets): {n} external requests")
    assert_clean(page, jupyter_log, nb)


ALERTS_JS = f"""
() => {{
  const found = [];
  const walk = (n) => {{
    if (n.nodeType === Node.ELEMENT_NODE) {{
      if (n.classList.contains('alert')) {{
        const cs = getComputedStyle(n);
        found.push({{text: ({DEEP_TEXT_JS})(n), padding: cs.paddingTop, radius: cs.borderTopLeftRadius}});
      }}
      if (n.shadowRoot) walk(n.shadowRoot);
    }}
    for (const c of n.children || []) walk(c);
  }};
  walk(document.body);
  return found;
}}
"""


def test_offline_panel_sweep(page, jupyter, jupyter_log, open_notebook, shot, clock, artifacts):
    """A whole sweep from the panel offline: the panel, the live view and the "sweep is
    running" alert (models sent after the first render) load nothing from outside
    127.0.0.1, and the alert is styled (alerts.css inline, not linked from the CDN)."""
    nb = open_notebook("offline.ipynb")
    assert "READY" in nb.run_print(0, "READY", timeout=90)
    nb.execute(1)
    out = nb.output_locator(1)
    nb.wait_output(1, r"\b6 jobs\b", timeout=30)
    out.get_by_role("button", name="Run", exact=True).click()
    nb.wait_output(1, r"a sweep is running", timeout=30)
    alert = page.wait_for_function(
        f"() => ({ALERTS_JS})().find((a) => /a sweep is running/.test(a.text)) || false",
        timeout=15_000,
        polling=100,
    ).json_value()
    assert alert["padding"] == "12px" and alert["radius"] == "4px", f"the alert is unstyled: {alert}"
    nb.wait_canvas(1, timeout=30)
    shot("sweep-running")
    # the last updates of a finished sweep reach the page (a page message handled on a
    # kernel subshell used to drop an update in flight: Notebook 7, JupyterLab >= 4.4):
    # the panel's badges of the view's last redraw, its message, the view's final Dataset
    nb.wait_output(1, r"finished:\s*6 done", timeout=60)
    text = nb.wait_output(1, r"Finished: 6 jobs", timeout=30)
    assert "'running'" not in text and "'pending'" not in text, text[-800:]
    end = nb.run_print(2, "END")
    assert "done=6" in end and "total=6" in end, end
    shot("finished")
    n = len(page.external.urls)
    (artifacts / f"offline-requests-{jupyter.frontend}.txt").write_text(
        f"external requests seen by the offline check ({jupyter.frontend}, a whole panel sweep): {n}\n"
        + "".join(f"{u}\n" for u in page.external.urls)
    )
    print(f"\n[e2e] offline ({jupyter.frontend}): {n} external requests")
    assert_clean(page, jupyter_log, nb)  # fails listing them if there was any
