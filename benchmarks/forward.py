"""The forwarder against werkzeug's ProxyMiddleware, WSGIProxy2 and nginx, to one upstream.

The upstream is bjoern (a C server) serving hello world, so the proxies are
the bottleneck.  The three Python proxies run under the reference server
with the same workers and threads; nginx runs ``proxy_pass`` with upstream
keepalive as the reference limit; "direct" hits the upstream itself.  wrk
drives each in turn, keep-alive, on loopback.

    python benchmarks/forward.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import ROOT, free_port, start, stop, wait_listening, wrk

sys.path.insert(0, str(ROOT))
from tests.server.nginx import Nginx

PY = sys.executable

NGINX_LOCATION = """
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
"""


PATH = "/x/hello"  # the same path for every proxy (werkzeug proxies only under a prefix)


def measure(url: str, port: int, seconds: int) -> dict:
    url += PATH.lstrip("/")
    wait_listening(port)
    wrk(url, seconds=1, connections=50)
    return wrk(url, seconds=seconds, connections=50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    peers = ("werkzeug", "wsgiproxy2", "bjoern")
    print(", ".join(f"{name} {version(name)}" for name in peers))
    upstream_port = free_port()
    upstream = start(
        [
            PY,
            "-c",
            "import bjoern, benchmarks.apps as a; "
            f"bjoern.run(a.hello, '127.0.0.1', {upstream_port})",
        ]
    )
    results = {}
    try:
        results["direct (bjoern)"] = measure(
            f"http://127.0.0.1:{upstream_port}/", upstream_port, args.seconds
        )
        env = {**os.environ, "BENCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}"}
        for name, factory in (
            ("wsgistack LoadBalancer", "forwarder()"),
            ("werkzeug ProxyMiddleware", "werkzeug_proxy()"),
            ("WSGIProxy2", "wsgiproxy2()"),
        ):
            port = free_port()
            proc = start(
                [
                    PY,
                    "-m",
                    "wsgistack.cli",
                    "serve",
                    f"benchmarks.apps:{factory}",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "2",
                    "--threads",
                    "4",
                    "--log-level",
                    "warning",
                ],
                env,
            )
            try:
                results[name] = measure(f"http://127.0.0.1:{port}/", port, args.seconds)
            finally:
                stop(proc)
        if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
            with tempfile.TemporaryDirectory() as directory:
                backend = f"upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}"
                with Nginx(
                    Path(directory),
                    NGINX_LOCATION,
                    workers=2,
                    port=free_port(),
                    http_extra=backend,
                ) as nginx:
                    results["nginx proxy_pass"] = measure(nginx.url + "/", nginx.port, args.seconds)
    finally:
        stop(upstream)
    ours = results["wsgistack LoadBalancer"]["rps"]
    print(f"\n{'':<26} {'req/s':>9} {'p99':>10} {'errors':>7} {'wsgistack is':>13}")
    for name, r in results.items():
        p99 = f"{r['p99'] * 1000:.2f}ms"
        print(f"{name:<26} {r['rps']:>9.0f} {p99:>10} {r['errors']:>7} {ours / r['rps']:>12.2f}x")


if __name__ == "__main__":
    main()
