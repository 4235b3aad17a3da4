"""PasteDeploy: ``[server:main]`` with ``use = egg:wsgistack#main``, as pserve loads it."""

from __future__ import annotations

import os
import signal
import socket
import sys
import urllib.request

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

#: pserve's run where "localhost" resolves as a stock Debian /etc/hosts names
#: it, 127.0.0.1 and ::1 (Pyramid's development.ini listens on it): some
#: machines, this sandbox among them, name only 127.0.0.1.
RUN_DUAL_STACK_LOCALHOST = (
    """
import socket

resolve = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    if host != "localhost":
        return resolve(host, *args, **kwargs)
    return resolve("127.0.0.1", *args, **kwargs) + resolve("::1", *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""
    + RUN
)

INI = """
[app:main]
use = call:pidapp:make_app

[server:main]
use = egg:wsgistack#main
{server}
"""


#: pidapp's settings come from the environment and a module on the path as it is
#: imported, as a Django settings module's do: it answers them, then its pid.
SETTINGS_APP = """
import os
from wsgiref.validate import validator

import pidsettings

GREETING = os.environ["GREETING"]


def make_app(global_conf, **settings):
    @validator
    def app(environ, start_response):
        body = f"{GREETING} {pidsettings.NAME} {os.getpid()}".encode()
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    return app
"""


@pytest.fixture
def pserve(tmp_path):
    with launched(tmp_path) as launch:

        def start(server: str, run: str = RUN, app: str = APP) -> Served:
            (tmp_path / "pidapp.py").write_text(app)
            (tmp_path / "run.py").write_text(run)
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


def test_env_and_pythonpath_are_set_before_pserve_loads_the_app(pserve, tmp_path):
    # pserve loads the server, then the app, then serves: the options that the
    # app's import reads take effect as the server loads, as the CLI's do first.
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "pidsettings.py").write_text("NAME = 'site'\n")
    served = pserve(
        f"host = 127.0.0.1\nport = 0\nenv = GREETING=hello\npythonpath = {tmp_path / 'lib'}",
        app=SETTINGS_APP,
    )
    greeting, name, pid = served.get().split()
    assert (greeting, name) == ("hello", "site")
    assert int(pid) in served.workers()


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


def _listening(served: Served, count: int) -> list[str] | None:
    """The URLs of the server's ``listening on`` lines, once there are ``count``."""
    lines = served.log.read_text().splitlines()
    urls = [line.split("listening on ", 1)[1] for line in lines if "listening on " in line]
    return sorted(urls) if len(urls) == count else None


@pytest.mark.parametrize("server", ["listen = localhost:0", "host = localhost\nport = 0"])
def test_a_name_is_served_on_every_address_it_resolves_to(pserve, ipv6_loopback, server):
    # waitress binds both addresses of "localhost", so a browser that tries
    # ::1 first is answered at once, not refused (and left to fall back).
    served = pserve(f"{server}\nworkers = 0", run=RUN_DUAL_STACK_LOCALHOST)
    urls = poll(lambda: _listening(served, 2))
    assert [url.rsplit(":", 1)[0] for url in urls] == ["http://127.0.0.1", "http://[::1]"]
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert int(response.read()) == served.proc.pid


def test_an_address_named_twice_is_bound_once():
    # "localhost" is 127.0.0.1 (and perhaps ::1): binding 127.0.0.1:6543
    # twice would fail; waitress binds each address once.
    options = ini_server_options({"listen": "127.0.0.1:6543 localhost:6543"}, "ini")
    binds = [str(bind) for bind in ServerConfig.from_options(**options).bind]
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", 6543)}
    assert binds == ["127.0.0.1:6543", *(["[::1]:6543"] if "::1" in resolved else [])]


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
            "listen = nowhere.invalid:8000",
            "server main: listen: 'nowhere.invalid' does not resolve to an address (",
            id="listen-a-name-that-resolves-to-nothing",
        ),
        pytest.param(
            "host = nowhere.invalid\nport = 8000",
            "server main: host: 'nowhere.invalid' does not resolve to an address (",
            id="host-a-name-that-resolves-to-nothing",
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


def test_env_written_as_a_toml_table_in_an_ini_is_refused_naming_it():
    # TOML's env = {A = "1"} copied into [server:main] would set a variable "{A ".
    with pytest.raises(ConfigError, match=r"env: '\{A ': a variable's name has no spaces"):
        ini_server_options({"env": '{A = "1"}', "listen": "127.0.0.1:0"}, "site.ini")
