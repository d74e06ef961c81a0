"""Helpers for the browser tests: a JupyterLab server, a notebook page, Panel's DOM.

Nothing here imports playwright at module level, so collection works (and the
tests skip with a reason) where it is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
REPO = HERE.parents[1]
NOTEBOOKS = HERE / "notebooks"
APPS = HERE / "apps"
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

SETTING_OVERRIDES = {
    # JupyterLab's news/update check would fetch from the internet and pop up a toast
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    # render every cell (the default windowing leaves cells out of view unrendered)
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}

# The text of an element and of every open shadow root under it (Panel/bokeh
# render each model inside a shadow root, which innerText does not enter).
DEEP_TEXT_JS = """
(el) => {
  const out = [];
  const walk = (n) => {
    if (n.nodeType === Node.TEXT_NODE) { out.push(n.textContent); return; }
    if (n.nodeType !== Node.ELEMENT_NODE && n.nodeType !== Node.DOCUMENT_FRAGMENT_NODE) return;
    if (n.nodeName === 'STYLE' || n.nodeName === 'SCRIPT') return;
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.childNodes) walk(c);
  };
  walk(el);
  return out.join(' ').replace(/\\s+/g, ' ');
}
"""

# Visible canvases (width and height > 0) under an element, shadow roots included.
CANVAS_COUNT_JS = """
(el) => {
  let n = 0;
  const walk = (node) => {
    if (node.nodeName === 'CANVAS' && node.width > 0 && node.height > 0) n += 1;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const c of node.children || []) walk(c);
  };
  walk(el);
  return n;
}
"""

# Plots under an element: visible canvases (bokeh) plus loaded images (the PNG a
# blocking %%mushin_sweep cell shows while it runs), shadow roots included.
PLOT_COUNT_JS = """
(el) => {
  let n = 0;
  const walk = (node) => {
    if (node.nodeName === 'CANVAS' && node.width > 0 && node.height > 0) n += 1;
    if (node.nodeName === 'IMG' && node.complete && node.naturalWidth > 0) n += 1;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const c of node.children || []) walk(c);
  };
  walk(el);
  return n;
}
"""

STATUS_RE = re.compile(r"((?:\d+ (?:pending|running|done|failed|cancelled) )+)of (\d+)")


def parse_status(text: str) -> dict[str, int] | None:
    """The first status badge line (``2 pending 1 running 5 done 0 failed of 8``)
    in a text, as counts; None if there is none."""
    m = STATUS_RE.search(text + " ")
    if not m:
        return None
    counts = {s: 0 for s in ("pending", "running", "done", "failed", "cancelled")}
    for n, s in re.findall(r"(\d+) (\w+)", m.group(1)):
        counts[s] = int(n)
    counts["total"] = int(m.group(2))
    return counts


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate the process group, then kill it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def isolated_env(base: Path) -> dict[str, str]:
    """Jupyter/IPython state in ``base`` (never the user's or the venv's)."""
    env = dict(os.environ)
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
        "IPYTHONDIR": base / "ipython",
        "MPLCONFIGDIR": base / "mpl",
    }
    for k, d in dirs.items():
        d.mkdir(parents=True, exist_ok=True)
        env[k] = str(d)
    env["PYTHONUNBUFFERED"] = "1"
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.pop("JUPYTER_PATH", None)
    # the settings overrides (news popup off) in <JUPYTER_CONFIG_DIR>/labconfig, read by
    # jupyterlab_server as default_setting_overrides: the venv stays untouched
    labconfig = dirs["JUPYTER_CONFIG_DIR"] / "labconfig"
    labconfig.mkdir(exist_ok=True)
    (labconfig / "default_setting_overrides.json").write_text(json.dumps(SETTING_OVERRIDES))
    return env


FRONTENDS = ("lab", "notebook7")


class LabServer:
    """``jupyter lab`` (``frontend="lab"``) or Notebook 7 (``"notebook7"``) on
    127.0.0.1 in a fresh root directory."""

    def __init__(self, base: Path, log_path: Path, frontend: str = "lab") -> None:
        assert frontend in FRONTENDS, frontend
        self.frontend = frontend
        self.base = base
        self.root = base / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        for nb in NOTEBOOKS.glob("*.ipynb"):
            shutil.copy(nb, self.root / nb.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = isolated_env(base)
        self._log = open(log_path, "w")
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab" if frontend == "lab" else "notebook",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.token=",
            "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True",  # the tests shut kernels down through the REST API
        ]
        if frontend == "lab":
            cmd += [
                "--LabApp.expose_app_in_browser=True",
                # offline: no news feed, no update check (the settings override hides the popup)
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
            ]
        else:
            cmd += ["--JupyterNotebookApp.expose_app_in_browser=True"]
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_http(f"{self.url}/api/status", self.proc, 90, log_path)
        except BaseException:
            self.stop()
            raise

    def shutdown_sessions(self, path: str | None = None) -> int:
        """Shut down the kernel sessions of notebook ``path`` (all with None) through the
        REST API; returns how many. A notebook opened afterwards gets a fresh kernel."""
        with urllib.request.urlopen(f"{self.url}/api/sessions", timeout=10) as r:
            sessions = json.loads(r.read())
        n = 0
        for s in sessions:
            if path is None or s.get("path") == path:
                req = urllib.request.Request(f"{self.url}/api/sessions/{s['id']}", method="DELETE")
                with urllib.request.urlopen(req, timeout=30):
                    n += 1
        return n

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        # shutting the server down also shuts its kernels down
        stop_process(self.proc, timeout=15)
        self._log.close()


def server_log_problems(text: str, allow: list[re.Pattern] | None = None) -> list[str]:
    """Lines of a server log that report an error: tracebacks, ``[E ...]`` and
    ``ERROR`` lines (less the allow-listed ones)."""
    bad = []
    for line in text.splitlines():
        if re.search(r"Traceback|^\[E |\bERROR\b|Exception", line):
            if allow and any(p.search(line) for p in allow):
                continue
            bad.append(line)
    return bad


def notebook_variant(server: LabServer, name: str, comms: str) -> str:
    """A copy of notebook ``name`` in the server's root whose Panel extension uses the
    comms ``comms`` (``pn.extension(comms="ipywidgets", ...)``: Panel over ipywidgets
    and jupyter_bokeh, as in VS Code and Colab); returns the copy's name."""
    nb = json.loads((server.root / name).read_text())
    src = "".join(nb["cells"][0]["source"])
    new = src.replace("pn.extension(inline=True)", f"pn.extension(comms={comms!r}, inline=True)")
    assert new != src, f"{name}: its first cell has no pn.extension(inline=True) to change"
    nb["cells"][0]["source"] = new
    out = f"{Path(name).stem}-{comms}.ipynb"
    (server.root / out).write_text(json.dumps(nb))
    return out


class Notebook:
    """A notebook opened in ``page``, with a fresh kernel: in a fresh JupyterLab
    workspace, or in Notebook 7's notebook page."""

    def __init__(self, page: Any, server: LabServer, name: str, timeout: float = 60) -> None:
        self.page = page
        self.server = server
        self.name = name
        server.shutdown_sessions(name)  # a kernel left from an earlier test is not reused
        if server.frontend == "lab":
            ws = f"e2e-{uuid.uuid4().hex[:10]}"
            url = f"{server.url}/lab/workspaces/{ws}/tree/{name}?reset"
        else:
            url = f"{server.url}/notebooks/{name}"
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_function(
            """(name) => {
                const app = window.jupyterapp;
                const w = app && app.shell && app.shell.currentWidget;
                return !!(w && w.context && w.context.path === name && w.sessionContext
                          && w.sessionContext.session && w.sessionContext.session.kernel
                          && w.sessionContext.session.kernel.status === 'idle');
            }""",
            arg=name,
            timeout=timeout * 1000,
            polling=200,
        )
        # more room for the outputs
        page.evaluate("() => { const s = window.jupyterapp.shell; if (s.collapseLeft) s.collapseLeft(); }")
        if os.environ.get("E2E_DEBUG_SETUP"):  # debugging aid: append code to the first cell
            page.evaluate(
                """(extra) => { const m = window.jupyterapp.shell.currentWidget.content.widgets[0].model.sharedModel;
                               m.setSource(m.getSource() + '\\n' + extra); }""",
                os.environ["E2E_DEBUG_SETUP"],
            )

    # ---------------------------------------------------------------- cells
    def n_cells(self) -> int:
        return self.page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")

    def run_cell(self, i: int) -> None:
        """Execute cell ``i`` (as the Run button does), without waiting for it."""
        before = self.page.evaluate(
            """(i) => {
                const app = window.jupyterapp;
                const nb = app.shell.currentWidget.content;
                const before = nb.widgets[i].model.executionCount;
                nb.activeCellIndex = i;
                nb.deselectAll();
                app.commands.execute('notebook:run-cell');
                return before;
            }""",
            i,
        )
        self.wait_started(i, before)

    def wait_started(self, i: int, before: int | None = None, timeout: float = 30) -> None:
        """Wait until cell ``i`` runs, or has already run (a fast cell may finish
        between two polls: its execution count then differs from ``before``)."""
        self.page.wait_for_function(
            """([i, before]) => {
                const c = window.jupyterapp.shell.currentWidget.content.widgets[i];
                const n = c.model.executionCount;
                return n === null || /\\*/.test(c.promptNode.textContent) || n !== before;
            }""",
            arg=[i, before],
            timeout=timeout * 1000,
            polling=50,
        )

    def running(self, i: int) -> bool:
        return self.page.evaluate(
            """(i) => /\\*/.test(window.jupyterapp.shell.currentWidget.content.widgets[i]
                                 .promptNode.textContent)""",
            i,
        )

    def wait_done(self, i: int, timeout: float = 60) -> int:
        """Wait until cell ``i`` has an execution count (it finished); return it."""
        handle = self.page.wait_for_function(
            """(i) => {
                const c = window.jupyterapp.shell.currentWidget.content.widgets[i];
                const n = c.model.executionCount;
                return (n !== null && !/\\*/.test(c.promptNode.textContent)) ? n : false;
            }""",
            arg=i,
            timeout=timeout * 1000,
            polling=100,
        )
        return int(handle.json_value())

    def execute(self, i: int, timeout: float = 60) -> str:
        self.run_cell(i)
        self.wait_done(i, timeout)
        return self.output_text(i)

    def output_locator(self, i: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(i).locator(".jp-Cell-outputArea")

    def output_text(self, i: int) -> str:
        """All text of cell ``i``'s outputs, Panel's shadow roots included."""
        return self.page.evaluate(
            f"""(i) => {{
                const c = window.jupyterapp.shell.currentWidget.content.widgets[i];
                return ({DEEP_TEXT_JS})(c.outputArea.node);
            }}""",
            i,
        )

    def printed(self, i: int) -> str:
        """What cell ``i`` printed (stream outputs and text/plain results, from the
        notebook model the page renders)."""
        return self.page.evaluate(
            """(i) => {
                const o = window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs;
                let out = '';
                for (let k = 0; k < o.length; k++) {
                    const j = o.get(k).toJSON();
                    if (j.output_type === 'stream') out += [].concat(j.text).join('');
                    else if (j.data && j.data['text/plain']) out += [].concat(j.data['text/plain']).join('');
                }
                return out;
            }""",
            i,
        )

    def run_print(self, i: int, expect: str = r"\S", timeout: float = 60) -> str:
        """Execute cell ``i``, wait for it to finish and for its printed text to
        match ``expect`` (outputs come on another channel than the reply, so they
        may arrive after it); return what it printed (whatever it is at timeout)."""
        self.run_cell(i)
        self.wait_done(i, timeout)
        try:
            self.page.wait_for_function(
                """([i, pat]) => {
                    const o = window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs;
                    let out = '';
                    for (let k = 0; k < o.length; k++) {
                        const j = o.get(k).toJSON();
                        if (j.output_type === 'stream') out += [].concat(j.text).join('');
                        else if (j.data && j.data['text/plain']) out += [].concat(j.data['text/plain']).join('');
                        else if (j.output_type === 'error') return true;
                    }
                    return new RegExp(pat).test(out);
                }""",
                arg=[i, expect],
                timeout=10_000,
                polling=100,
            )
        except Exception:
            pass  # the caller's assertion shows what was printed
        return self.printed(i)

    def stderr_tracebacks(self, skip: tuple[int, ...] = ()) -> list[str]:
        """Tracebacks written to any cell's stderr (e.g. a Panel comm callback that
        failed in the kernel) and error outputs, except in the cells ``skip``."""
        return self.page.evaluate(
            """(skip) => {
                const out = [];
                const cells = window.jupyterapp.shell.currentWidget.content.widgets;
                cells.forEach((c, i) => {
                    if (skip.includes(i) || !c.model.outputs) return;
                    const o = c.model.outputs;
                    for (let k = 0; k < o.length; k++) {
                        const j = o.get(k).toJSON();
                        const t = [].concat(j.text || []).join('');
                        if (j.output_type === 'stream' && /Traceback|Error/.test(t))
                            out.push('cell ' + i + ' ' + j.name + ': ' + t.slice(-1500));
                        if (j.output_type === 'error')
                            out.push('cell ' + i + ' error: ' + j.ename + ': ' + j.evalue);
                    }
                });
                return out;
            }""",
            list(skip),
        )

    def output_errors(self, i: int) -> list[str]:
        """Error outputs (ename: evalue) in cell ``i``'s model."""
        return self.page.evaluate(
            """(i) => {
                const o = window.jupyterapp.shell.currentWidget.content.widgets[i].model.outputs;
                const out = [];
                for (let k = 0; k < o.length; k++) {
                    const j = o.get(k).toJSON();
                    if (j.output_type === 'error') out.push(j.ename + ': ' + j.evalue);
                }
                return out;
            }""",
            i,
        )

    def canvases(self, i: int) -> int:
        return self.page.evaluate(
            f"""(i) => ({CANVAS_COUNT_JS})(
                window.jupyterapp.shell.currentWidget.content.widgets[i].outputArea.node)""",
            i,
        )

    def wait_output(self, i: int, pattern: str, timeout: float = 30) -> str:
        """Wait until cell ``i``'s output text matches ``pattern``; return the text."""
        self.page.wait_for_function(
            f"""([i, pat]) => {{
                const c = window.jupyterapp.shell.currentWidget.content.widgets[i];
                return new RegExp(pat).test(({DEEP_TEXT_JS})(c.outputArea.node));
            }}""",
            arg=[i, pattern],
            timeout=timeout * 1000,
            polling=100,
        )
        return self.output_text(i)

    def wait_canvas(self, i: int, timeout: float = 30) -> int:
        self.page.wait_for_function(
            f"""(i) => ({CANVAS_COUNT_JS})(
                window.jupyterapp.shell.currentWidget.content.widgets[i].outputArea.node) > 0""",
            arg=i,
            timeout=timeout * 1000,
            polling=100,
        )
        return self.canvases(i)

    def wait_plot(self, i: int, timeout: float = 30) -> None:
        """Wait until cell ``i`` shows a plot: a bokeh canvas, or the PNG image a
        blocking ``%%mushin_sweep`` cell updates while it runs."""
        self.page.wait_for_function(
            f"""(i) => ({PLOT_COUNT_JS})(
                window.jupyterapp.shell.currentWidget.content.widgets[i].outputArea.node) > 0""",
            arg=i,
            timeout=timeout * 1000,
            polling=100,
        )

    def images(self, i: int) -> int:
        """Loaded images in cell ``i``'s outputs."""
        return self.page.evaluate(
            """(i) => Array.from(window.jupyterapp.shell.currentWidget.content.widgets[i]
                        .outputArea.node.querySelectorAll('img'))
                        .filter((im) => im.complete && im.naturalWidth > 0).length""",
            i,
        )

    def scroll_to(self, i: int) -> None:
        self.page.evaluate(
            """(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].node
                        .scrollIntoView({block: 'start'})""",
            i,
        )


# ----------------------------------------------------------------------------- checks

# Console messages of the page that are not errors of ours. Each entry says why.
CONSOLE_ALLOW: list[tuple[re.Pattern, str]] = []

# Page errors that are not errors of ours. Each entry says why.
PAGEERROR_ALLOW: list[tuple[re.Pattern, str]] = [
    (
        re.compile(
            r"^Cannot read properties of undefined \(reading 'schema'\)\n"
            r"\s+at http://127\.0\.0\.1:\d+/static/notebook/notebook_core\.\w+\.js"
        ),
        "Notebook 7.6's shortcuts plugin (pluginChanged in notebook_core.js) reads the schema of a "
        "plugin it did not load; it throws while the page loads, before any cell runs, with or "
        "without settings overrides (seen with a bare notebook page).",
    ),
]


# Requests that leave the machine: every URL but 127.0.0.1/localhost (and data:/blob:).
EXTERNAL_URL = re.compile(
    r"^(?!(?:https?|wss?)://(?:127\.0\.0\.1|localhost)(?::\d+)?/)(?!data:|blob:|about:)"
)


class ExternalRequests:
    """The offline check: every request of a browser context to a host other than
    127.0.0.1/localhost (CSS, scripts, fonts, images, websockets alike) is recorded
    in ``urls`` and aborted (the tests run offline; nothing may leave the machine)."""

    def __init__(self, context: Any) -> None:
        self.urls: list[str] = []
        context.route(EXTERNAL_URL, lambda route: route.abort())
        context.on("request", lambda request: self.record(request.url))

    def watch(self, page: Any) -> None:
        page.on("websocket", lambda ws: self.record(ws.url))

    def record(self, url: str) -> None:
        if EXTERNAL_URL.match(url):
            self.urls.append(url)

    def problems(self) -> list[str]:
        return [f"external request (the page must work offline): {u}" for u in self.urls]


class PageErrors:
    def __init__(self) -> None:
        self.console: list[str] = []
        self.page: list[str] = []
        self.allowed: list[str] = []

    def on_console(self, msg) -> None:
        if msg.type != "error":
            return
        loc = msg.location or {}
        text = f"{msg.text} ({loc.get('url', '')}:{loc.get('lineNumber', '')})"
        if any(p.search(text) for p, _why in CONSOLE_ALLOW):
            self.allowed.append(text)
        else:
            self.console.append(text)

    def on_pageerror(self, exc) -> None:
        stack = getattr(exc, "stack", None) or ""
        text = str(exc) + ("\n" + "\n".join(stack.splitlines()[1:4]) if stack else "")
        if any(p.search(text) for p, _why in PAGEERROR_ALLOW):
            self.allowed.append(text)
        else:
            self.page.append(text)

    def problems(self) -> list[str]:
        return [f"console.error: {t}" for t in self.console] + [f"pageerror: {t}" for t in self.page]


# Server-log lines that contain "ERROR"/"Exception"/"Traceback" but report no
# error of the code under test. Each entry says why.
LOG_ALLOW: list[re.Pattern] = []


class LogWatch:
    """The part of a log file written since the watch began."""

    def __init__(self, text_fn) -> None:
        self.text_fn = text_fn
        self.start = len(text_fn())

    def new_text(self) -> str:
        return self.text_fn()[self.start :]

    def problems(self) -> list[str]:
        return server_log_problems(self.new_text(), LOG_ALLOW)


def assert_clean(
    page, log: LogWatch, nb: Notebook | None = None, skip_cells: tuple[int, ...] = (), settle_ms: int = 500
) -> None:
    """No console error or page error, no error in the server log since the test
    began, and (with ``nb``) no traceback in any cell's output but ``skip_cells``."""
    page.wait_for_timeout(settle_ms)  # let late messages arrive (not an assertion on time)
    problems = page.errors.problems() + [f"server log: {line}" for line in log.problems()]
    problems += page.external.problems()
    if nb is not None:
        problems += [f"notebook output: {t}" for t in nb.stderr_tracebacks(skip_cells)]
    assert not problems, "errors while the test ran:\n" + "\n".join(problems)


def keep_as_docs_image(src: Path, name: str) -> Path:
    """The screenshot as docs/images/<name> with MUSHIN_NB_UPDATE_DOCS_IMAGES=1 (a test
    run leaves the tracked image alone otherwise), else as test-artifacts/docs-<name>."""
    root = Path(__file__).parents[2]
    if os.environ.get("MUSHIN_NB_UPDATE_DOCS_IMAGES") == "1":
        dst = root / "docs" / "images" / name
    else:
        dst = root / "test-artifacts" / f"docs-{name}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst
