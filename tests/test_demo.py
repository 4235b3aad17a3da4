"""``wsgistack demo`` as a new user runs it: started in a subprocess, its URLs fetched."""

from __future__ import annotations

import http.client
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fetch(port: int, path: str) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def test_the_demo_shows_every_middleware_at_work(tmp_path):
    log = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsgistack.cli", "demo", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        printed: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [printed.put(line) for line in proc.stdout], daemon=True
        ).start()
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any("curl -i" in line and "/boom" in line for line in lines):
            lines.append(printed.get(timeout=max(0.1, deadline - time.monotonic())))
        text = "".join(lines)
        port = int(re.search(r"demo on http://127\.0\.0\.1:(\d+)", text).group(1))
        urls = re.findall(r"curl -i (http://\S+)", text)
        assert [u.split(str(port), 1)[1] for u in urls] == [
            "/",
            "/api/hello",
            "/pool/",
            "/private/",
            "/boom",
        ]

        status, _, body = fetch(port, "/")
        assert status == 200 and "wsgistack demo" in body
        api = [fetch(port, "/api/hello") for _ in range(6)]
        assert [s for s, _, _ in api] == [200] * 5 + [429]
        assert api[0][1]["RateLimit-Policy"] == '"5-per-10s";q=5;w=10'
        assert api[5][1]["Retry-After"] == "2"  # as printed: then one every 2 s
        pool = [fetch(port, "/pool/")[2].strip() for _ in range(4)]
        assert pool == ["served by upstream A", "served by upstream B"] * 2
        assert fetch(port, "/private/")[0] == 403
        status, headers, body = fetch(port, "/boom")
        assert status == 500 and headers["X-Error-Id"] in body and "secret" not in body
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        log.seek(0)
        logged = log.read()
        # The log shows each refusal, and the traceback under the id the client got.
        assert "RateLimiter refused 127.0.0.1" in logged
        assert "IPFilter refused 127.0.0.1 /private/" in logged
        assert f"error {headers['X-Error-Id']}: GET /boom" in logged and "secret" in logged
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()
            log.close()
