"""``mushin-nb serve FILE:CLASS`` in a real browser: opened at the URL it prints (with its
token), the panel renders and a Run completes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _lab import APPS, DEEP_TEXT_JS, LogWatch, assert_clean, free_port, isolated_env, stop_process, wait_http

pytestmark = pytest.mark.e2e


@pytest.fixture()
def served(tmp_path, artifacts):
    """``mushin-nb serve serve_app.py:Squares`` on 127.0.0.1:PORT, its log captured,
    stopped afterwards."""
    shutil.copy(APPS / "serve_app.py", tmp_path / "serve_app.py")
    port = free_port()
    log_path = artifacts / "serve.log"
    log = open(log_path, "w")
    exe = shutil.which("mushin-nb", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "mushin_nb.cli"]
    cmd += ["serve", "serve_app.py:Squares", "--port", str(port), "-d", str(tmp_path / "sweep")]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=isolated_env(tmp_path / "env"),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = _printed_url(proc, log_path, port, 90)
        wait_http(url, proc, 90, log_path)
        yield url, LogWatch(lambda: log_path.read_text(errors="replace")), tmp_path
    finally:
        stop_process(proc)
        log.close()


def _printed_url(proc, log_path: Path, port: int, timeout: float) -> str:
    """The URL serve prints once listening: ``http://127.0.0.1:PORT/?token=...``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(rf"(http://127\.0\.0\.1:{port}/\?token=\w+)", log_path.read_text(errors="replace"))
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"serve printed no tokened URL within {timeout} s:\n{log_path.read_text()[-3000:]}")


def _text(page) -> str:
    return page.evaluate(f"() => ({DEEP_TEXT_JS})(document.body)")


def test_serve_renders_panel_and_runs(page, served, shot, clock):
    url, log, workdir = served
    bare = page.request.get(url.split("?")[0])  # without the token: refused
    assert bare.status == 401 and "needs its token" in bare.text()
    page.goto(url)  # the printed URL: the token is kept in a cookie for the websocket
    run = page.get_by_role("button", name="Run", exact=True)
    run.wait_for(timeout=60_000)
    x = page.locator("input[placeholder^='e.g. 0.01']").first
    x.fill("1, 2, 3")
    x.press("Enter")
    page.wait_for_function(
        f"() => /\\b3 jobs\\b/.test(({DEEP_TEXT_JS})(document.body))", timeout=15_000, polling=100
    )
    shot("served-panel")
    page.wait_for_function("(b) => !b.disabled", arg=run.element_handle(), timeout=10_000)
    run.click()
    page.wait_for_function(
        f"() => /Finished: 3 jobs/.test(({DEEP_TEXT_JS})(document.body))", timeout=60_000, polling=100
    )
    page.wait_for_function(
        """() => { let n = 0; const walk = (el) => { if (el.nodeName === 'CANVAS' && el.width > 0) n++;
                   if (el.shadowRoot) walk(el.shadowRoot); for (const c of el.children || []) walk(c); };
                   walk(document.body); return n > 0; }""",
        timeout=30_000,
        polling=100,
    )
    text = _text(page)
    m = re.search(r"(\d+) done", text)
    assert m and int(m.group(1)) == 3, text[:2000]
    assert (workdir / "sweep" / ".mushin" / "index.jsonl").exists()
    shot("served-finished")
    assert_clean(page, log)
