"""Socket activation and inherited listeners: ``LISTEN_FDS``/``LISTEN_PID`` and ``fd://N``.

The real tool drives the systemd cases (``systemd-socket-activate``, which
binds, waits for a client and execs the server with the variables set); a
launcher of ours plays systemd's part where the socket must outlive the
server (a restart): this test holds the listener, as systemd does, and each
server gets it as descriptor 3 in a process of the same PID.  Every server is
stopped by its PID; every wait is a bounded poll.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks._wrk import free_port
from wsgistack.errors import ConfigError
from wsgistack.server import Server
from wsgistack.server.activation import activated, listen_fds
from wsgistack.server.bind import Bind, parse_bind
from wsgistack.server.config import ServerConfig
from wsgistack.server.listener import describe_listener

from .live import RawClient, uwsgi_packet
from .served import Served, launched, poll

#: What the app sees of the variables: sd_listen_fds(3) removes them once read.
APP = """
import os
from wsgiref.validate import validator


@validator
def app(environ, start_response):
    seen = [os.environ.get(name) for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")]
    body = f"{os.getpid()} {seen}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

#: systemd's part: descriptor argv[1] becomes 3, then exec argv[2:] as this PID.
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)  # a dup2 copy is inheritable
    os.close(fd)
if os.environ.pop("ACTIVATE", ""):
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""

GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
CLI = ("-m", "wsgistack.cli", "serve")
SERVE = (*CLI, "seeing:app")
ACTIVATE_TOOL = shutil.which("systemd-socket-activate")
# Skipped where the tool is missing, but not in CI: .ci/run installs it (Debian's systemd).
needs_tool = pytest.mark.skipif(
    ACTIVATE_TOOL is None and not os.environ.get("CI"), reason="systemd-socket-activate missing"
)


@pytest.fixture
def start(tmp_path) -> Iterator[Callable[..., Served]]:
    (tmp_path / "seeing.py").write_text(APP)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    with launched(tmp_path) as launch:
        yield launch


def launch_with(
    start, listener: socket.socket, *args: str, activate: bool = True, cli=SERVE, **kw
) -> Served:
    """The server on ``listener`` as descriptor 3, with LISTEN_FDS=1 for its own PID if ``activate``."""
    env = {**os.environ, "ACTIVATE": "1" if activate else ""}
    fd = listener.fileno()
    argv = [sys.executable, "launcher.py", str(fd), *cli, *args]
    return start(argv, env=env, pass_fds=(fd,), **kw)


def body(address: tuple[str, int] | str) -> str:
    with RawClient(address, timeout=10.0) as client:
        status, _, data = client.request(GET)
    assert status == 200
    return data.decode()


def ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def connected() -> socket.socket:
    """A connection (as a socket unit with Accept=yes passes), to a listener gone since."""
    with listening() as listener:
        return socket.create_connection(listener.getsockname())


def listening(address: tuple[str, int] = ("127.0.0.1", 0)) -> socket.socket:
    sock = socket.socket()
    sock.bind(address)
    sock.listen(64)
    return sock


# -- systemd's own tool -------------------------------------------------------


@needs_tool
def test_systemd_socket_activate_s_tcp_socket_is_served_instead_of_the_bind(start):
    port = free_port()
    server = start(
        [ACTIVATE_TOOL, "-l", f"127.0.0.1:{port}", sys.executable, *SERVE, "--bind", "127.0.0.1:0"],
        wait=False,
    )
    poll(lambda: f"Listening on 127.0.0.1:{port}" in server.log.read_text())
    pid, seen = body(("127.0.0.1", port)).split(" ", 1)
    assert seen == "[None, None, None]"  # unset before the app (and its programs) ran
    log = server.log.read_text()
    assert "socket activation: serving the 1 socket passed by systemd (LISTEN_FDS);" in log
    assert "--bind 127.0.0.1:0 ignored" in log
    assert f"listening on http://127.0.0.1:{port}\n" in log  # the socket's real address
    assert int(pid) in server.workers()


@needs_tool
def test_an_inherited_unix_socket_s_file_outlives_the_server(start, tmp_path):
    path = str(tmp_path / "activated.sock")
    server = start([ACTIVATE_TOOL, "-l", path, sys.executable, *SERVE], wait=False)
    poll(lambda: f"Listening on {path}" in server.log.read_text())
    assert body(path).endswith("[None, None, None]")
    assert f"listening on http://unix:{path}\n" in server.log.read_text()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    # systemd made the file and keeps it for the next start: never ours to remove.
    assert stat.S_ISSOCK(os.stat(path).st_mode)


# -- a launcher in systemd's place: the socket outlives the servers -------------


def test_a_restart_on_the_same_socket_loses_no_connection(start):
    with listening() as listener:
        address = listener.getsockname()
        first = launch_with(start, listener)
        assert first.port == address[1]  # the "listening on" line names the inherited socket
        assert body(address)
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(30) == 0
        # Nobody serves now: the kernel queues these on the socket we hold, as systemd's.
        waiting = [RawClient(address, timeout=30.0) for _ in range(5)]
        for client in waiting:
            client.send(GET)
        second = launch_with(start, listener)
        try:
            answers = [client.response() for client in waiting]
        finally:
            for client in waiting:
                client.close()
        assert [status for status, _, _ in answers] == [200] * 5
        assert {data.split()[0] for _, _, data in answers} <= {
            str(pid).encode() for pid in second.workers()
        }


def test_listen_pid_of_another_process_is_ignored(start):
    # This test's own PID: the variables were meant for someone else (a parent).
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())}
    server = start([sys.executable, *SERVE, "--bind", "127.0.0.1:0"], env=env)
    assert body(("127.0.0.1", server.port)).endswith("[None, None, None]")
    assert "socket activation" not in server.log.read_text()


def test_fd_bind_serves_an_inherited_socket_beside_a_bound_one(start):
    with listening() as listener:
        server = launch_with(
            start, listener, "--bind", "fd://3", "--bind", "127.0.0.1:0", activate=False
        )
        log = server.log.read_text()
        assert f"listening on http://127.0.0.1:{listener.getsockname()[1]}\n" in log
        assert body(listener.getsockname())
        assert body(("127.0.0.1", server.port))


def test_a_reload_drops_an_fd_bind_and_refuses_it_back(start, tmp_path):
    both = 'bind = ["fd://3", "127.0.0.1:0"]\n'
    stack = tmp_path / "stack.toml"
    stack.write_text(f"[server]\n{both}workers = 1\n[app]\nuse = 'seeing:app'\n")
    with listening() as listener:
        server = launch_with(start, listener, "--config", "stack.toml", activate=False, cli=CLI)
        own = f"socket:[{os.fstat(listener.fileno()).st_ino}]"
        master = server.proc.pid

        def holds() -> bool:
            fds = Path(f"/proc/{master}/fd")
            return any(os.readlink(fd) == own for fd in fds.iterdir() if fd.is_symlink())

        assert holds()
        stack.write_text(stack.read_text().replace(both, 'bind = "127.0.0.1:0"\n'))
        server.proc.send_signal(signal.SIGHUP)
        poll(lambda: "reload done" in server.log.read_text())
        poll(lambda: not holds())  # our copy, closed once the old worker left
        stack.write_text(stack.read_text().replace('bind = "127.0.0.1:0"\n', both))
        server.proc.send_signal(signal.SIGHUP)
        log = poll(lambda: "reload refused" in (text := server.log.read_text()) and text)
        assert "bind: fd://3: an earlier reload dropped this inherited socket" in log


# -- bad input fails at start-up, naming the bind or the variable -------------


def test_a_descriptor_that_is_not_open_fails_at_start_up(start):
    server = start([sys.executable, *SERVE, "--bind", "fd://900"], wait=False)
    assert server.proc.wait(30) != 0
    assert "bind: fd://900: descriptor 900 is not open" in server.log.read_text()


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(lambda: os.open(os.devnull, os.O_RDONLY), "is not a socket", id="file"),
        pytest.param(
            lambda: socket.socket(type=socket.SOCK_DGRAM).detach(),
            "is a SOCK_DGRAM socket, not a stream (SOCK_STREAM) one",
            id="udp",
        ),
        pytest.param(lambda: socket.socket().detach(), "is not listening", id="never-listened"),
        pytest.param(lambda: connected().detach(), "is not listening", id="connection"),
    ],
)
def test_a_descriptor_that_is_no_listener_is_refused_and_left_open(make, problem):
    fd = make()
    try:
        with pytest.raises(
            ConfigError, match=re.escape(f"bind: fd://{fd}: descriptor {fd} {problem}")
        ):
            Server(ok, bind=f"fd://{fd}", workers=0).bind()
        os.fstat(fd)  # still the passer's: refused, not closed
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LISTEN_PID": "me", "LISTEN_FDS": "1"}, "LISTEN_PID (the environment): 'me'"),
        ({"LISTEN_PID": "{pid}", "LISTEN_FDS": "two"}, "LISTEN_FDS (the environment): 'two'"),
        ({"LISTEN_PID": "{pid}"}, "LISTEN_FDS (the environment): None"),
    ],
    ids=["pid", "count", "no-count"],
)
def test_bad_variables_fail_naming_them(environ, message):
    environ = {name: value.format(pid=os.getpid()) for name, value in environ.items()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        listen_fds(environ)


def test_the_variables_are_read_once_and_removed_for_whoever_they_name():
    ours = {"LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:api", "HOME": "/"}
    assert listen_fds(ours, pid=7) == (3, 4)
    assert ours == {"HOME": "/"}
    theirs = {"LISTEN_PID": "8", "LISTEN_FDS": "2"}
    assert listen_fds(theirs, pid=7) == ()
    assert theirs == {}


@pytest.mark.parametrize(
    ("text", "bind"),
    [
        ("fd://3", Bind("fd", fd=3)),
        ("uwsgi://fd://4", Bind("fd", fd=4, protocol="uwsgi")),
        ("http://fd://0", Bind("fd", fd=0, protocol="http")),
    ],
)
def test_fd_binds_parse(text, bind):
    assert parse_bind(text) == bind
    assert str(parse_bind(text)) == text.removeprefix("http://")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fd://abc", "bind: 'fd://abc': fd://N takes a descriptor number"),
        ("fd://-1", "bind: 'fd://-1': fd://N takes a descriptor number"),
        (["fd://3", "uwsgi://fd://3"], "bind: fd://3 is listed twice"),
    ],
)
def test_bad_fd_binds_fail_naming_the_bind(value, message):
    with pytest.raises(ConfigError, match=message):
        Server(ok, bind=value, workers=0)


def test_uwsgi_protocol_applies_to_the_passed_sockets():
    config = ServerConfig.from_options(protocol="uwsgi")
    served, said = activated(config, (3, 4), bind_given=False)
    assert served.bind == (Bind("fd", fd=3, protocol="uwsgi"), Bind("fd", fd=4, protocol="uwsgi"))
    assert said == "socket activation: serving the 2 sockets passed by systemd (LISTEN_FDS)"
    given = ServerConfig.from_options(bind=["fd://4", "uwsgi://fd://3"])
    assert activated(given, (3, 4), bind_given=True)[0] == given  # they say how to serve them
    # A passed socket the binds leave out queues clients nobody answers: said.
    _, said = activated(given, (3, 4, 5, 6), bind_given=True)
    assert said.endswith("serving the fd:// binds given; fd 5, 6 not among them, not served")


def test_an_inherited_socket_serves_in_process_and_stays_open_for_its_owner(checked):
    with listening() as listener:
        copy = os.dup(listener.fileno())  # what we hand over; the test keeps the original
        server = Server(checked(ok), bind=f"fd://{copy}")
        with server:
            assert server.addresses == [listener.getsockname()]
            assert server.url == f"http://127.0.0.1:{listener.getsockname()[1]}"
            with RawClient(listener.getsockname()) as client:
                assert client.request(GET)[0] == 200
        with pytest.raises(OSError):
            os.fstat(copy)  # our copy closed...
        with socket.create_connection(listener.getsockname(), timeout=5):
            pass  # ...the owner's still listens


def test_socket_mode_does_not_apply_to_an_inherited_socket():
    with pytest.raises(ConfigError, match=re.escape("systemd's SocketMode=")):
        ServerConfig.from_options(bind="fd://3", socket_mode="660")


def test_an_inherited_socket_speaks_uwsgi_when_its_bind_says_so(checked):
    variables = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.1"}
    with listening() as listener:
        copy = os.dup(listener.fileno())
        served = Server(checked(ok), bind=f"uwsgi://fd://{copy}")
        with served, RawClient(listener.getsockname()) as client:
            client.send(uwsgi_packet(variables))
            assert client.read_to_close().startswith(b"HTTP/1.1 200 OK\r\n")


def test_an_inherited_abstract_unix_socket_is_named_with_an_at(checked, caplog):
    # systemd's ListenStream=@name: the kernel's name starts with a NUL byte,
    # which the `listening on` line and server.addresses printed as it came.
    caplog.set_level(logging.INFO, "wsgistack.server")
    name = f"wsgistack-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("\0" + name)
        listener.listen()
        copy = os.dup(listener.fileno())
        with Server(checked(ok), bind=f"fd://{copy}") as server:
            assert server.addresses == [(f"@{name}", 0)]
            assert describe_listener(server.listeners[0], server.config.bind[0]) == (
                f"http://unix:@{name}"
            )
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect("\0" + name)
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
