"""The forwarder against werkzeug's ProxyMiddleware, WSGIProxy2 and nginx, to one upstream.

The upstream is bjoern (a C server) serving hello world, so the proxies are
the bottleneck.  The three Python proxies run under the reference server
with the same workers and threads; nginx runs ``proxy_pass`` with upstream
keepalive as the reference limit; "direct" hits the upstream itself.  wrk
drives each in rotated turns, keep-alive, on loopback; medians are reported.
``--front bjoern`` serves the three Python proxies with bjoern (4 processes)
instead of the reference server: what each proxy costs on its own, with a
server in C around it.

    python benchmarks/forward.py [--seconds 5] [--rounds 3] [--front wsgistack|bjoern]

It needs bjoern (``pip install bjoern``, which builds against libev: Debian's
``libev-dev``), wrk, and nginx for its row.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
from functools import partial
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import (
    ROOT,
    free_port,
    group_cpu_seconds,
    print_medians,
    rotated_rounds,
    start,
    stop,
    tree_cpu_seconds,
    wait_listening,
)

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

PROXIES = (
    ("wsgistack LoadBalancer", "forwarder()"),
    ("werkzeug ProxyMiddleware", "werkzeug_proxy()"),
    ("WSGIProxy2", "wsgiproxy2()"),
)


#: bjoern serves one request at a time per process; the proxies wait on the upstream.
BJOERN_PROCESSES = 4


def serve_bjoern(factory: str, port: int, env: dict[str, str]):
    # bjoern leaves out an empty QUERY_STRING (PEP 3333 allows it); werkzeug's and
    # WSGIProxy2's proxies index it, so every proxy gets it filled in the same way.
    code = (
        "import os, bjoern, benchmarks.apps as a\n"
        f"proxy = a.{factory}\n"
        "def app(environ, start_response):\n"
        "    environ.setdefault('QUERY_STRING', '')\n"
        "    return proxy(environ, start_response)\n"
        f"bjoern.listen(app, '127.0.0.1', {port})\n"
        f"for _ in range({BJOERN_PROCESSES - 1}):\n"
        "    if os.fork() == 0:\n"
        "        break\n"
        "bjoern.run()\n"
    )
    return start([PY, "-c", code], env)


def serve(factory: str, port: int, env: dict[str, str]):
    return start(
        [
            *(PY, "-m", "wsgistack.cli", "serve", f"benchmarks.apps:{factory}"),
            *("--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"),
            *("--log-level", "warning"),
        ],
        env,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--front", choices=("wsgistack", "bjoern"), default="wsgistack")
    args = parser.parse_args()
    front = serve if args.front == "wsgistack" else serve_bjoern
    if importlib.util.find_spec("bjoern") is None:
        # Not in the bench extra: it builds against libev, which pip cannot install.
        raise SystemExit(
            "bjoern, the upstream, is not installed: pip install bjoern"
            " (it builds against libev: apt-get install libev-dev)"
        )
    peers = ("werkzeug", "wsgiproxy2", "bjoern")
    versions = ", ".join(f"{name} {version(name)}" for name in peers)
    print(f"{versions}; the proxies served by {args.front}")
    upstream_port = free_port()
    upstream = start(
        [
            PY,
            "-c",
            "import bjoern, benchmarks.apps as a; "
            f"bjoern.run(a.hello, '127.0.0.1', {upstream_port})",
        ]
    )
    env = {**os.environ, "BENCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}"}
    urls = {"direct (bjoern)": f"http://127.0.0.1:{upstream_port}"}
    # Each case's serving processes (not the shared upstream), for CPU per request.
    cpu = {"direct (bjoern)": partial(group_cpu_seconds, upstream)}
    procs = []
    runs: dict[str, list[dict]] = {}
    try:
        for name, factory in PROXIES:
            port = free_port()
            procs.append(front(factory, port, env))
            urls[name] = f"http://127.0.0.1:{port}"
            cpu[name] = partial(group_cpu_seconds, procs[-1])
        with contextlib.ExitStack() as stack:
            if shutil.which("nginx") or os.path.exists("/usr/sbin/nginx"):
                directory = stack.enter_context(tempfile.TemporaryDirectory())
                backend = f"upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 32; }}"
                nginx = Nginx(
                    Path(directory), NGINX_LOCATION, workers=2, port=free_port(), http_extra=backend
                )
                stack.enter_context(nginx)
                urls["nginx proxy_pass"] = nginx.url
                cpu["nginx proxy_pass"] = partial(tree_cpu_seconds, nginx.proc.pid)  # type: ignore[union-attr]
            for url in urls.values():
                wait_listening(int(url.rsplit(":", 1)[1]))
            runs = rotated_rounds(
                {name: url + PATH for name, url in urls.items()},
                rounds=args.rounds,
                seconds=args.seconds,
                connections=50,
                cpu=cpu,
            )
    finally:
        for proc in procs:
            stop(proc)
        stop(upstream)
    print_medians(runs, "wsgistack LoadBalancer", "wsgistack is")


if __name__ == "__main__":
    main()
