"""nginx in front of the reference server: ``uwsgi_pass`` against ``proxy_pass``, and uWSGI.

One nginx (1 worker, the stock ``uwsgi_params``) serves three locations in
one run, each driven by wrk in turn:

- ``/uwsgi/``: ``uwsgi_pass`` to ``wsgistack serve --bind uwsgi://...``
- ``/http/``: ``proxy_pass`` to ``wsgistack serve --bind HOST:PORT``, nginx's
  default (a new upstream connection per request, as uwsgi_pass does)
- ``/http-keepalive/``: ``proxy_pass`` to it with an upstream ``keepalive`` pool
- ``/uwsgi-native/``: ``uwsgi_pass`` to uWSGI itself serving the same app
- ``/uwsgi-native-tl/``: the same, uWSGI with ``--thunder-lock``

Each of ours has one bind, as a deployment behind nginx does (a uwsgi-only
worker's threads accept for themselves, as uWSGI's do; see ``worker.py``).
Every backend runs 2 processes x 4 threads of ``benchmarks.apps:hello``;
uWSGI runs twice, as it starts and with ``--thunder-lock`` (its docs advise
serialised accept for that layout): the faster is the one to beat.
The machine is shared and the first run after a start pays for it, so each
round runs the four in a rotated order and the medians over the rounds are
reported.

    python benchmarks/uwsgi.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from functools import partial
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
    wait_listening,
)

sys.path.insert(0, str(ROOT))
from tests.server.nginx import Nginx, uwsgi_params

PY = sys.executable

LOCATIONS = """
    location /uwsgi/ {{ include {params}; uwsgi_pass 127.0.0.1:{ours_uwsgi}; }}
    location /http/ {{ proxy_pass http://127.0.0.1:{ours_http}; }}
    location /http-keepalive/ {{
      proxy_pass http://ours;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location /uwsgi-native/ {{ include {params}; uwsgi_pass 127.0.0.1:{native}; }}
    location /uwsgi-native-tl/ {{ include {params}; uwsgi_pass 127.0.0.1:{native_tl}; }}
"""


CASES = [
    ("uwsgi_pass -> wsgistack", "/uwsgi/"),
    ("proxy_pass -> wsgistack", "/http/"),
    ("proxy_pass keepalive -> wsgistack", "/http-keepalive/"),
    ("uwsgi_pass -> uWSGI", "/uwsgi-native/"),
    ("uwsgi_pass -> uWSGI --thunder-lock", "/uwsgi-native-tl/"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # This interpreter's uWSGI (the one that runs the app), not another on PATH.
    uwsgi = str(Path(PY).parent / "uwsgi")
    if not Path(uwsgi).exists():
        uwsgi = shutil.which("uwsgi") or uwsgi
    uwsgi_version = subprocess.run([uwsgi, "--version"], capture_output=True, text=True)
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    print(f"{nginx_version}, uWSGI {uwsgi_version.stdout.strip()}, wrk -c{args.connections}")
    ours_uwsgi, ours_http, native, native_tl, front = (free_port() for _ in range(5))

    def ours(bind: str):
        return start(
            [
                *(PY, "-m", "wsgistack.cli", "serve", "benchmarks.apps:hello", "--bind", bind),
                *("--workers", "2", "--threads", "4", "--log-level", "warning"),
            ]
        )

    ours_over_uwsgi = ours(f"uwsgi://127.0.0.1:{ours_uwsgi}")
    ours_over_http = ours(f"127.0.0.1:{ours_http}")

    def native_uwsgi(port: int, *extra: str):
        return start(
            [
                *(uwsgi, "--socket", f"127.0.0.1:{port}", "--module", "benchmarks.apps:hello"),
                *("--processes", "2", "--threads", "4", "--master", "--disable-logging"),
                *("--chdir", str(ROOT), "--need-app", *extra),
            ]
        )

    # uWSGI both as it starts and with the serialised accept its docs advise for
    # processes x threads; the faster of the two is the one to compare with.
    theirs = [native_uwsgi(native), native_uwsgi(native_tl, "--thunder-lock")]
    try:
        for port in (ours_uwsgi, ours_http, native, native_tl):
            wait_listening(port)
        locations = LOCATIONS.format(
            params=uwsgi_params(),
            ours_uwsgi=ours_uwsgi,
            ours_http=ours_http,
            native=native,
            native_tl=native_tl,
        )
        with tempfile.TemporaryDirectory() as directory:
            config = f"upstream ours {{ server 127.0.0.1:{ours_http}; keepalive 32; }}"
            with Nginx(Path(directory), locations, port=front, http_extra=config) as nginx:
                urls = {name: nginx.url + path for name, path in CASES}
                # The backend's CPU per request (nginx spends the same on every case).
                backend = dict(
                    zip(
                        [name for name, _ in CASES],
                        [ours_over_uwsgi, ours_over_http, ours_over_http, *theirs],
                        strict=True,
                    )
                )
                runs = rotated_rounds(
                    urls,
                    rounds=args.rounds,
                    seconds=args.seconds,
                    connections=args.connections,
                    cpu={name: partial(group_cpu_seconds, proc) for name, proc in backend.items()},
                )
    finally:
        for proc in (ours_over_uwsgi, ours_over_http, *theirs):
            stop(proc)
    print_medians(runs, CASES[0][0], "uwsgi_pass/wsgistack is")


if __name__ == "__main__":
    main()
