"""``mushin-nb serve`` is locked like Jupyter: a token (printed in the URL) by default,
127.0.0.1 only, foreign Host headers and websocket origins refused.

Each test starts the real command in a subprocess on a free port of 127.0.0.1 and
stops it by its pid; requests go through ``http.client`` (no redirects followed, the
Host header ours to set)."""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

APP = """
from mushin_nb import MultiRunMetricsWorkflow


class Squares(MultiRunMetricsWorkflow):
    @staticmethod
    def task(x: int = 1) -> dict:
        return dict(y=x * x)
"""

BANNER = re.compile(r"serving the Squares panel at (http://127\.0\.0\.1:(\d+)/(\S*))")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        (tmp / "app.py").write_text(APP)
        self.port = _free_port()
        self.log_path = tmp / "serve.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "mushin_nb.cli", "serve", "app.py:Squares", "--port", str(self.port)]
        cmd += ["-d", str(tmp / "sweep"), *args]
        full_env = {k: v for k, v in os.environ.items() if k != "MUSHIN_NB_TOKEN"}
        full_env.update(env or {}, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.url = self._wait_banner(120)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_banner(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = BANNER.search(self.log())
            if m:  # printed once the port is bound
                assert int(m.group(2)) == self.port
                return m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"no URL printed within {timeout} s:\n{self.log()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            h = {"Host": f"127.0.0.1:{self.port}"}
            h.update(headers or {})
            conn.putrequest("GET", path, skip_host=True)
            for k, v in h.items():
                conn.putheader(k, v)
            conn.endheaders()
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
        finally:
            conn.close()

    def websocket(self, origin: str, headers: dict[str, str]) -> int:
        """The status of a websocket upgrade request to ``/ws`` from a page of ``origin``."""
        key = base64.b64encode(os.urandom(16)).decode()
        status, _, _ = self.get(
            "/ws",
            {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": key,
                "Origin": origin,
                **headers,
            },
        )
        return status

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


def test_the_printed_url_carries_a_random_token(served):
    m = re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=([0-9a-f]+)", served.url)
    assert m, served.url
    assert len(m.group(1)) >= 32  # secrets.token_hex(24): 48 hex digits
    status, _, page = served.get(served.url.split(f":{served.port}", 1)[1])
    assert status == 200 and "mushin-nb: Squares" in page


def test_no_token_or_a_wrong_one_is_refused(served):
    status, headers, body = served.get("/")
    assert status == 401 and "needs its token" in body and "mushin-nb: Squares" not in body
    assert "set-cookie" not in headers
    status, _, body = served.get("/?token=not-the-token")
    assert status == 403 and "Wrong token" in body
    # what runs app code or talks to a session is gated too, not only the page
    for path in ("/metadata", "/autoload.js?bokeh-autoload-element=x", "/login"):
        assert served.get(path)[0] == 401, path
    assert served.websocket(f"http://127.0.0.1:{served.port}", {}) == 401
    # the token never reaches the log, even in a refused request's line
    token = served.url.rsplit("=", 1)[1]
    served.get(f"/?token={token}", {"Host": "evil.example:80"})
    assert token not in served.log().replace(served.url, "")


def test_the_token_is_kept_in_a_cookie_for_the_follow_up_requests(served):
    token = served.url.rsplit("=", 1)[1]
    status, headers, _ = served.get(f"/?token={token}")
    assert status == 200
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
    pair = cookie.split(";", 1)[0]
    status, _, page = served.get("/", {"Cookie": pair})
    assert status == 200 and "mushin-nb: Squares" in page
    assert served.get("/", {"Cookie": pair.split("=")[0] + "=forged"})[0] == 401
    assert served.get("/", {"Authorization": f"token {token}"})[0] == 200


def test_a_foreign_host_header_or_websocket_origin_is_refused(served):
    token = served.url.rsplit("=", 1)[1]
    ok = f"/?token={token}"
    assert served.get(ok, {"Host": f"localhost:{served.port}"})[0] == 200
    for host in ("evil.example", f"evil.example:{served.port}", f"127.0.0.1:{served.port + 1}", "127.0.0.1"):
        status, _, body = served.get(ok, {"Host": host})
        assert status == 403 and "answers to" in body, host
    auth = {"Authorization": f"token {token}"}
    assert served.websocket("http://evil.example", auth) == 403
    assert served.websocket(f"http://127.0.0.1:{served.port + 1}", auth) == 403
    assert served.websocket(f"http://localhost:{served.port}", auth) == 101  # switched: accepted


def test_no_token_opts_out_with_a_warning(tmp_path):
    s = Served(tmp_path, "--no-token")
    try:
        assert s.url == f"http://127.0.0.1:{s.port}/"
        assert "WARNING: no token" in s.log()
        status, headers, page = s.get("/")
        assert status == 200 and "mushin-nb: Squares" in page and "set-cookie" not in headers
        assert s.get("/", {"Host": f"evil.example:{s.port}"})[0] == 403  # the Host check stays
    finally:
        s.stop()


def test_given_token_and_loopback_only(tmp_path):
    s = Served(tmp_path, env={"MUSHIN_NB_TOKEN": "my-secret"})
    try:
        assert s.url.endswith("/?token=my-secret")
        assert s.get("/?token=my-secret")[0] == 200 and s.get("/")[0] == 401
    finally:
        s.stop()
    r = subprocess.run(
        [sys.executable, "-m", "mushin_nb.cli", "serve", "app.py:Squares", "--address", "0.0.0.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "loopback address only" in r.stderr and "ssh -L" in r.stderr
