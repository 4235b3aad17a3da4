"""PasteDeploy: ``[server:main]`` with ``use = egg:wsgistack#main``, as pserve loads it."""

from __future__ import annotations

import os
import signal
import socket
import sys

import pytest
from paste.deploy import loadserver

from wsgistack.errors import ConfigError
from wsgistack.paste import ini_server_options
from wsgistack.server.config import ServerConfig

from .server.served import Served, launched, poll

#: A paste.app_factory whose app, checked by wsgiref's validator, answers its worker's pid.
APP = """
import os
from wsgiref.validate import validator


def make_app(global_conf, **settings):
    @validator
    def app(environ, start_response):
        body = str(os.getpid()).encode()
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    return app
"""

#: What pserve does with an ini: load the server, then the app, then serve it.
RUN = """
import sys
from paste.deploy import loadapp, loadserver

uri = "config:" + sys.argv[1]
server = loadserver(uri)
sys.exit(server(loadapp(uri)))
"""

INI = """
[app:main]
use = call:pidapp:make_app

[server:main]
use = egg:wsgistack#main
{server}
"""


@pytest.fixture
def pserve(tmp_path):
    (tmp_path / "pidapp.py").write_text(APP)
    (tmp_path / "run.py").write_text(RUN)

    with launched(tmp_path) as launch:

        def start(server: str) -> Served:
            ini = tmp_path / "site.ini"
            ini.write_text(INI.format(server=server))
            return launch([sys.executable, "run.py", str(ini)])

        yield start


def test_host_and_port_serve_the_app_with_the_prefork_master(pserve):
    served = pserve("host = 127.0.0.1\nport = 0\nworkers = 2\nthreads = 2")
    workers = poll(lambda: served.count_workers(2))
    assert {int(served.get()) for _ in range(10)} <= workers
    assert os.getpid() not in workers
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0


def test_listen_names_several_addresses(pserve, tmp_path):
    path = tmp_path / "site.sock"
    served = pserve(f"listen = 127.0.0.1:0 unix:{path}\nworkers = 0")
    assert served.get().isdigit()
    poll(lambda: path.exists())
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize(
    "server",
    ["listen = *:6543", "bind = *:6543", "host = *\nport = 6543", "listen = ['*:6543']"],
)
def test_a_star_host_is_every_interface_as_waitress_reads_it(server):
    # Pyramid's production.ini has "listen = *:6543": switching its use line
    # from waitress to us must listen as waitress did, not fail to bind "*".
    options = ini_server_options(dict(line.split(" = ") for line in server.split("\n")), "ini")
    binds = ServerConfig.from_options(**options).bind
    assert [str(bind) for bind in binds] == ["0.0.0.0:6543", "[::]:6543"]


def test_a_star_host_listens_beside_other_addresses(tmp_path):
    options = ini_server_options({"listen": f"*:6543 unix:{tmp_path}/s.sock"}, "ini")
    binds = ServerConfig.from_options(**options).bind
    assert [str(bind) for bind in binds] == ["0.0.0.0:6543", "[::]:6543", f"unix:{tmp_path}/s.sock"]


@pytest.mark.parametrize(
    ("server", "message"),
    [
        pytest.param(
            "port = 0\nthreds = 2",
            "server main: threds: unknown server option (did you mean 'threads'?)",
            id="unknown-name",
        ),
        pytest.param(
            "port = 0\nworkers = two",
            "server main: workers: 'two' is not an integer",
            id="bad-value",
        ),
        pytest.param(
            "port = 0\nsocket_mode = 660",
            "server main: socket_mode: 660 applies to unix sockets, and no bind is unix:/path",
            id="options-that-conflict",
        ),
        pytest.param(
            "host = 127.0.0.1\nport = http",
            "server main: port: 'http' is not a port number (0-65535)",
            id="bad-port",
        ),
        pytest.param(
            "host = 127.0.0.1\nport = 70000",
            "server main: bind: '127.0.0.1:70000' is not HOST:PORT (port 0-65535)",
            id="port-out-of-range",
        ),
        pytest.param(
            "port = 8000\nbind = 127.0.0.1:8001",
            "server main: port: give host and port, or bind, not both",
            id="port-and-bind",
        ),
        pytest.param(
            "listen = 127.0.0.1:8000\nbind = 127.0.0.1:8001",
            "server main: listen: give bind or listen (the same option), not both",
            id="listen-and-bind",
        ),
        pytest.param(
            "listen = 8000",
            "server main: bind: 8000 is not HOST:PORT or unix:/path",
            id="listen-a-port-alone",
        ),
    ],
)
def test_a_bad_option_fails_as_the_server_loads_naming_it(tmp_path, server, message):
    # loadserver() alone: pserve loads the server before the app, so nothing
    # of the app is imported, nor any port bound, when an option is wrong.
    ini = tmp_path / "site.ini"
    ini.write_text(INI.format(server=server))
    with pytest.raises(ConfigError) as caught:
        loadserver(f"config:{ini}")
    assert str(caught.value).startswith(f"{ini}: {message}")
