"""The gateway, PasteDeploy and the error hook in process; ``Served``, a CLI server by PID.

The recipes' printed commands (the CLI, gunicorn) run in ``test_run_lines.py``.
"""

from __future__ import annotations

import importlib
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from wsgiref.validate import validator

import pytest
from paste.deploy import loadapp
from webtest import TestApp

from tests.middlewares.forward_parts import Upstreams
from tests.processes import stop_process
from tests.server.live import RawClient, uwsgi_packet

ROOT = Path(__file__).resolve().parents[2]


def test_the_gateway_forwards_legacy_and_serves_the_rest(monkeypatch):
    pool = Upstreams()
    try:
        old = pool.start("old")
        monkeypatch.setenv("LEGACY_UPSTREAMS", old)
        recipe = importlib.reload(importlib.import_module("recipes.gateway_legacy"))
        site = TestApp(validator(recipe.app))
        assert site.get("/").text == "the new site"
        assert site.get("/legacy/report").text == "old /report 0"
        recipe.legacy_pool.close()
    finally:
        pool.close()


class Served:
    """A CLI server in a subprocess, stopped by PID; ``address`` is its first listener's.

    ``address`` is ``(host, port)`` on 127.0.0.1 or ::1, or a unix socket's path;
    ``scheme`` is what it speaks (``http`` or ``uwsgi``). ``stdout`` names a file for
    what the server prints there (``--access-log -``).
    """

    LISTENING = re.compile(
        rb"(?:listening on|Listening at:) (http|uwsgi)://"
        rb"(?:unix:(\S+)|(127\.0\.0\.1|\[::1\]):(\d+))\n"
    )

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        stdout: Path | None = None,
    ) -> None:
        with open(stdout or os.devnull, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=cwd,
                env=env,
                stderr=subprocess.PIPE,
                stdout=out,
                bufsize=0,  # select() sees only the pipe: a buffered reader could hide lines
            )
        deadline = time.monotonic() + 30
        output = b""
        while time.monotonic() < deadline:
            if select.select([self.proc.stderr], [], [], 0.5)[0]:
                data = os.read(self.proc.stderr.fileno(), 65536)
                output += data
                found = self.LISTENING.search(output)
                if found:
                    scheme, path, host, port = (part and part.decode() for part in found.groups())
                    self.scheme = scheme
                    self.address: tuple[str, int] | str = path or (host.strip("[]"), int(port))
                    return
                if not data:
                    break
        self.close()
        raise AssertionError(output.decode(errors="replace"))

    def get(self, path: str) -> tuple[int, str]:
        if self.scheme == "uwsgi":  # as nginx's uwsgi_pass would ask
            variables = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "localhost"}
            message = uwsgi_packet(variables)
        else:
            message = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            message = message.encode()
        with RawClient(self.address, timeout=10) as client:
            status, _, body = client.request(message)
        return status, body.decode()

    def close(self) -> None:
        stop_process(self.proc, grace=20)
        self.proc.stderr.close()


def test_the_same_pipeline_from_a_paste_ini():
    app = TestApp(validator(loadapp("config:" + os.path.join(ROOT, "recipes", "site.ini"))))
    assert app.get("/").text == "served by any WSGI server"
    assert app.get("/admin/", extra_environ={"REMOTE_ADDR": "203.0.113.1"}, status=403)
    assert app.get("/admin/", extra_environ={"REMOTE_ADDR": "192.0.2.1"}).status_int == 200


def test_the_error_hook_sees_the_id_the_client_sees(caplog):
    from recipes import error_hook

    response = TestApp(validator(error_hook.app)).get("/orders/7", status=500)
    error_id = response.headers["X-Error-Id"]
    assert error_hook.REPORTED[-1] == ("KeyError", "/orders/7", error_id)
    assert "customer_id" not in response.text
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("taken", [True, False], ids=["port-in-use", "not-a-port"])
def test_the_pool_alone_answers_a_bad_port_in_one_line(taken):
    # A port in use (the demo still running on 8000, say) was a 15-line traceback.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1]) if taken else "80OO"
        result = subprocess.run(
            [sys.executable, "recipes/load_balance_pool.py", port],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (
        f"recipes/load_balance_pool.py: bind: cannot listen on 127.0.0.1:{port}: "
        "Address already in use\n"
        if taken
        else "usage: python recipes/load_balance_pool.py [PORT]\n"
    )
