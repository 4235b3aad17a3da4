"""The README's nginx blocks served as printed: real nginx in front of a real server.

``tests/test_readme.py`` checks each block with ``nginx -t``, which a block
that no longer does what the README says still passes (a lost
``X-Forwarded-For`` line, a ``uwsgi_pass`` to the wrong kind of bind). Here
each block goes into nginx's ``server {}`` as printed, with only its addresses
changed: ``proxy_pass http://127.0.0.1:8000`` and ``uwsgi_pass
127.0.0.1:9000`` point at the live server's ports, ``unix:/run/...`` at a
socket in a temporary directory. Every ``location`` is then asked for a path
under it, by clients on 127.0.0.2 and 127.0.0.3 (loopback addresses other than
nginx's own), and the app behind says what it saw.

The app is wrapped as the README tells a reader behind nginx to wrap it:
``trusted_proxies=["127.0.0.1"]``, here an ``IPFilter`` that denies 127.0.0.3.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.readme_blocks import BLOCKS, Block
from tests.server.live import live_server
from tests.server.nginx import Nginx, uwsgi_params
from tests.server.served import poll
from wsgistack.clientip import client_ip
from wsgistack.middlewares import IPFilter

NGINX_BLOCKS = [block for block in BLOCKS if block.lang == "nginx"]
CLIENT, DENIED = "127.0.0.2", "127.0.0.3"
HOST = "readme.example"
#: ``proxy_pass http://H:P;`` or ``uwsgi_pass H:P;`` / ``uwsgi_pass unix:/path;``
TARGET = re.compile(r"\b(proxy_pass|uwsgi_pass)\s+(http://)?(unix:)?([^\s;]+);")


def echo(environ, start_response):
    """What the app sees: who the client is (as the layers decided), the path, the host."""
    seen = {
        "client": str(client_ip(environ)),
        "script_name": environ["SCRIPT_NAME"],
        "path_info": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "host": environ.get("HTTP_HOST"),
        "proto": environ.get("HTTP_X_FORWARDED_PROTO"),
    }
    body = json.dumps(seen).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


APP = IPFilter(echo, deny=[DENIED], trusted_proxies=["127.0.0.1"])


def locations(text: str) -> list[tuple[str, str]]:
    """Each ``location PREFIX { ... }`` of a block: its prefix and its body."""
    return re.findall(r"location\s+(\S+)\s*\{([^}]*)\}", text)


def ask(nginx: Nginx, path: str, source: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(
        "127.0.0.1", nginx.port, timeout=30, source_address=(source, 0)
    )
    try:
        conn.request("GET", path, headers={"Host": HOST})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Nginx, Path]]:
    """nginx with the block as printed, in front of a live server with the binds it names."""
    block: Block = request.param
    targets = TARGET.findall(block.text)
    assert targets, f"README.md:{block.line}: an nginx block that passes to nothing"
    binds = []
    for directive, _, unix, address in targets:
        scheme = "uwsgi://" if directive == "uwsgi_pass" else ""
        where = f"unix:{tmp_path / Path(address).name}" if unix else "127.0.0.1:0"
        binds.append(scheme + where)
    access_log = tmp_path / "access.log"
    with live_server(APP, bind=binds, access_log=access_log) as server:
        listeners = iter(server.listeners)

        def moved(found: re.Match[str]) -> str:
            directive, http, unix = found.group(1, 2, 3)
            name = next(listeners).getsockname()
            where = name if unix else f"127.0.0.1:{name[1]}"
            return f"{directive} {http or ''}{unix or ''}{where};"

        text = TARGET.sub(moved, block.text)
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        shutil.copy(uwsgi_params(), nginx_dir / "uwsgi_params")  # `include uwsgi_params`
        with Nginx(nginx_dir, text) as nginx:
            yield nginx, access_log


@pytest.mark.parametrize("served", NGINX_BLOCKS, ids=[b.id for b in NGINX_BLOCKS], indirect=True)
def test_each_location_reaches_the_app_with_the_real_client(served, request):
    nginx, access_log = served
    block = request.node.callspec.params["served"]
    asked = 0
    for prefix, body in locations(block.text):
        path = prefix.rstrip("/") + "/readme/probe"
        status, answer = ask(nginx, path + "?x=1", CLIENT)
        assert status == 200, (block.id, prefix, answer)
        seen = json.loads(answer)
        # The client, not nginx: X-Forwarded-For from a trusted nginx, or uwsgi's REMOTE_ADDR.
        assert seen["client"] == CLIENT, (block.id, prefix, seen)
        mount = re.search(r"uwsgi_param\s+SCRIPT_NAME\s+(\S+);", body)
        assert seen["script_name"] == (mount.group(1) if mount else ""), (block.id, seen)
        assert seen["script_name"] + seen["path_info"] == path, (block.id, seen)
        assert (seen["query"], seen["host"]) == ("x=1", HOST), (block.id, seen)
        if "X-Forwarded-Proto" in body:
            assert seen["proto"] == "http", (block.id, seen)
        # The IP filter judges the same client: one nginx lets through, one it refuses.
        assert ask(nginx, path, DENIED)[0] == 403, (block.id, prefix)
        asked += 2

    # The server logs a request once its response is sent: the client can read the
    # answer a moment before the line reaches the file.
    def all_logged() -> list[str] | None:
        lines = access_log.read_text().splitlines()
        return lines if len(lines) >= asked else None

    logged = poll(all_logged)
    assert len(logged) == asked, logged
    assert logged and all(line.split()[0] in (CLIENT, DENIED) for line in logged), logged


def test_every_nginx_block_is_served():
    # The README's blocks behind nginx: proxy_pass, uwsgi_pass by TCP and by unix socket.
    kinds = {(d, bool(unix)) for b in NGINX_BLOCKS for d, _, unix, _ in TARGET.findall(b.text)}
    assert kinds == {("proxy_pass", False), ("uwsgi_pass", False), ("uwsgi_pass", True)}
