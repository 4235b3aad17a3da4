"""A real nginx on a loopback port, from a generated config, started and stopped by PID.

    with Nginx(tmp_path, locations) as nginx:
        urlopen(nginx.url + "/")

``locations`` is the body of the ``server {}`` block, e.g. a ``location /``
with ``uwsgi_pass`` and the distribution's stock ``uwsgi_params``;
``http_extra`` goes in the ``http {}`` block (an ``upstream``, say); ``user``
runs nginx's workers as that user (as root only).  Used by the
tests and by ``benchmarks/uwsgi.py``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.processes import stop_process

__all__ = ["Nginx", "free_port", "uwsgi_params"]

CONFIG = """
{user}
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_max_body_size 0;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
{http_extra}
  server {{
    listen 127.0.0.1:{port};
{locations}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (
            path
            for path in ("/usr/sbin/nginx", "/usr/local/nginx/sbin/nginx")
            if Path(path).exists()
        ),
        None,
    )
    if found is None:
        raise RuntimeError("nginx is not installed (.ci/run installs the Debian package)")
    return found


def uwsgi_params() -> str:
    """The stock ``uwsgi_params`` shipped with nginx."""
    for path in ("/etc/nginx/uwsgi_params", "/usr/local/nginx/conf/uwsgi_params"):
        if Path(path).exists():
            return path
    raise RuntimeError("nginx's uwsgi_params file was not found")


class Nginx:
    """nginx serving ``locations`` on a free loopback port until ``stop()``."""

    def __init__(
        self,
        directory: Path,
        locations: str,
        *,
        workers: int = 1,
        port: int = 0,
        http_extra: str = "",
        user: str = "",
    ) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # As root, nginx drops its workers to "nobody", who cannot write our temp dir;
        # ``user`` ("nobody nogroup") runs them as another user all the same.
        if user:
            user = f"user {user};"
        elif os.geteuid() == 0:
            user = "user root;"
        config = CONFIG.format(
            user=user,
            workers=workers,
            dir=self.directory,
            port=self.port,
            locations=locations,
            http_extra=http_extra,
        )
        self.config = self.directory / "nginx.conf"
        self.config.write_text(config)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Nginx:
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.directory), "-c", str(self.config), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)  # polling a starting process
        self.stop()
        raise RuntimeError(f"nginx did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)  # the master we started, by its PID
        self.proc.stderr.close()
        self.proc = None

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
