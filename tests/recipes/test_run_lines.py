"""Every command a recipe prints under "Run it", run as printed, and its "What to expect" checked.

The commands are read from the recipes themselves (a ``.py`` docstring, the
comments of a ``.toml`` or ``.ini``), so a command that changes in a recipe is
the command tested, and a new one fails until ``CHECKS`` has an entry for it.
Only what must change on a shared machine changes: ``127.0.0.1:8000`` becomes
port 0 (``python recipes/load_balance_pool.py`` gets ``0`` as its port), the
environment variables a recipe tells you to set (``UPSTREAMS``, ``RATE_LIMIT_STORE``)
point at real loopback servers, and ``HOME`` is a temporary directory (gunicorn
keeps its control socket there). Each server is a real process over a real
socket, stopped with SIGINT by its PID, as Ctrl-C would.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.middlewares.forward_parts import Upstreams
from tests.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
COMMAND = re.compile(r"(?:[A-Z_]+=\S+\s+)*(?:wsgistack|gunicorn|python)\s")
LISTENING = re.compile(r"(?:listening on|Listening at:) http://127\.0\.0\.1:(\d+)")


def recipe_text(path: Path) -> str:
    """What a recipe tells its reader: a ``.py``'s docstring, a ``.toml``'s or ``.ini``'s comments."""
    if path.suffix == ".py":
        return ast.get_docstring(ast.parse(path.read_text())) or ""
    return "\n".join(line[1:] for line in path.read_text().splitlines() if line[:1] == "#")


def printed_commands(path: Path) -> list[str]:
    """The shell commands in a recipe's docstring or comments, continuation lines joined."""
    lines = recipe_text(path).replace("\\\n", " ").splitlines()
    return [" ".join(line.split()) for line in lines if COMMAND.match(line.strip())]


PRINTED = [
    (path.name, command)
    for path in sorted(RECIPES.iterdir())
    if path.suffix in (".py", ".toml", ".ini")
    for command in printed_commands(path)
]


#: The package that brings each module a recipe imports, beyond wsgistack's own.
PACKAGES = {"flask": "flask", "werkzeug": "flask", "django": "django"}


def needed_packages(path: Path) -> set[str]:
    """What a recipe needs installed: what it imports, its Redis store, its commands."""
    source = path.read_text()
    needed = set()
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            needed |= {PACKAGES[top] for name in names if (top := name.split(".")[0]) in PACKAGES}
    if "redis://" in source:
        needed.add("redis")
    for command in printed_commands(path):
        if command.startswith("gunicorn "):
            needed.add("gunicorn")
        if "--paste" in command:
            needed.add("pastedeploy")
    return needed


@pytest.mark.parametrize(
    "path",
    [path for path in sorted(RECIPES.iterdir()) if path.suffix in (".py", ".toml", ".ini")],
    ids=lambda path: path.name,
)
def test_a_recipe_says_what_to_install_beyond_wsgistack(path):
    # After the README's first command (pip install -e .) a recipe that imports
    # Django died with "No module named 'django'": its docstring never said so.
    installs = {
        word
        for line in map(str.strip, recipe_text(path).splitlines())
        if line.startswith("Needs: pip install ")
        for word in line.removeprefix("Needs: pip install ").split()
    }
    assert needed_packages(path) == installs


def executable(name: str) -> str:
    """``wsgistack``/``gunicorn`` of this interpreter's environment, as a shell would find them."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name) or name


class Running:
    """A printed command, running: its port, a GET helper, what it logged so far."""

    def __init__(self, command: str, env: dict[str, str], home: Path, cwd: Path = ROOT) -> None:
        words = shlex.split(command)
        environ = {**os.environ, "HOME": str(home), **env}
        while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            name, _, value = words.pop(0).partition("=")
            environ[name] = env.get(name, value)
        words = ["127.0.0.1:0" if word == "127.0.0.1:8000" else word for word in words]
        if words[0] == "python":
            words = [sys.executable, *words[1:], "0"]
        else:
            words[0] = executable(words[0])
        self.proc = subprocess.Popen(
            words,
            cwd=cwd,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.port = 0
        # One thread reads every line (select() on a buffered pipe could miss one
        # already read ahead) and notes the port; it drains the pipe afterwards.
        self._listening = threading.Event()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if not self._listening.wait(60) or not self.port:
            self.stop()
            raise AssertionError(f"{command}: never listened\n{''.join(self.lines)}")

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            found = LISTENING.search(line)
            if found and not self.port:
                self.port = int(found.group(1))
                self._listening.set()
        self._listening.set()  # it ended: no port is coming

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], str]:
        """One GET as curl sends it: a redirect is an answer, never followed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.headers), response.read().decode()
        finally:
            conn.close()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int | None:
        """Ctrl-C, by PID; SIGTERM then SIGKILL if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)
        if self._drainer.is_alive():
            self._drainer.join(10)  # the output ends with the process
        self.proc.stdout.close()
        return self.proc.returncode


# -- what each command's recipe says to expect -----------------------------------------------
def error_hook(run: Running, ctx) -> None:
    status, headers, body = run.get("/")
    error_id = headers["X-Error-Id"]
    assert status == 500 and error_id in body and "customer_id" not in body
    wait_for(run, f"reported KeyError as {error_id}")
    assert f"error {error_id}: GET / from 127.0.0.1" in run.log and "Traceback" in run.log


def flask_admin(run: Running, ctx) -> None:
    assert run.get("/")[::2] == (200, "public home page")
    assert run.get("/admin/")[0] == 403
    assert run.get("/admin/", **{"X-Forwarded-For": "192.0.2.10"})[0] == 403  # spoofed


def gateway(run: Running, ctx) -> None:
    assert run.get("/")[::2] == (200, "the new site")
    assert run.get("/legacy/report")[::2] == (200, "/report /legacy")


def pool_as_served(run: Running, ctx) -> None:
    answers = [run.get("/")[2] for _ in range(4)]
    assert answers == ["served by upstream A\n", "served by upstream B\n"] * 2
    ctx.upstreams.stop("B")
    assert {run.get("/")[2] for _ in range(4)} == {"served by upstream A\n"}
    status = json.loads(run.get("/status")[2])
    assert [row["up"] for row in status] == [True, False]


def pool_alone(run: Running, ctx) -> None:
    answers = [run.get("/")[2] for _ in range(4)]
    assert answers == ["served by upstream A\n", "served by upstream B\n"] * 2
    assert [row["up"] for row in json.loads(run.get("/status")[2])] == [True, True]


def mount(run: Running, ctx) -> None:
    assert run.get("/api/users/ann")[2] == '{"self":"/api/users/ann"}\n'
    assert run.get("/site/articles/hi/")[2] == '{"self": "/site/articles/hi/"}'
    assert 'href="/site/articles/hi/"' in run.get("/")[2]
    status, headers, _ = run.get("/site")
    assert status == 308 and headers["Location"] == "/site/"


def django_redis(run: Running, ctx) -> None:
    statuses = [run.get("/api/items/")[0] for _ in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    status, headers, _ = run.get("/api/items/")
    assert status == 429 and int(headers["Retry-After"]) > 0
    assert headers["RateLimit-Policy"] == '"10-per-60s";q=10;w=60' and "RateLimit" in headers
    assert [run.get("/")[0] for _ in range(12)] == [200] * 12  # never limited


def any_server(run: Running, ctx) -> None:
    assert run.get("/")[::2] == (200, "served by any WSGI server")
    assert run.get("/admin/")[0] == 403
    status, headers, body = run.get("/boom")
    error_id = headers["X-Error-Id"]
    assert status == 500 and f"Error id: {error_id}" in body and "on purpose" not in body
    wait_for(run, f"error {error_id}: GET /boom")


def stack_toml(run: Running, ctx) -> None:
    assert run.get("/hello/x")[::2] == (200, '{"path": "/hello/x"}')
    assert [run.get("/hello/x")[0] for _ in range(25)] == [200] * 25  # not limited
    assert run.get("/admin/")[0] == 403  # 127.0.0.1 is not the office
    assert [run.get("/api/items")[0] for _ in range(21)] == [200] * 20 + [429]
    status, headers, body = run.get("/boom/")
    assert status == 500 and headers["X-Error-Id"] in body and "on purpose" not in body
    wait_for(run, f"error {headers['X-Error-Id']}: GET /boom/")
    status, headers, _ = run.get("/boom")  # curl follows no redirect
    assert status == 308 and headers["Location"] == "/boom/"
    status, headers, _ = run.get("/hello")
    assert status == 308 and headers["Location"] == "/hello/"
    assert run.get("/admin")[0] == 403  # refused before the dispatcher could redirect
    assert run.get("/")[0] == 404


def wait_for(run: Running, text: str) -> None:
    """A log line the server writes after it answered: read on until it shows up."""
    deadline = time.monotonic() + 10
    while text not in run.log:
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{run.log}"
        time.sleep(0.05)


#: (recipe, command as printed) -> the check of what the recipe says to expect.
CHECKS: dict[tuple[str, str], Callable[[Running, object], None]] = {
    ("error_hook.py", "wsgistack serve recipes.error_hook:app --bind 127.0.0.1:8000"): error_hook,
    (
        "flask_admin_allowlist.py",
        "wsgistack serve recipes.flask_admin_allowlist:app --bind 127.0.0.1:8000",
    ): flask_admin,
    (
        "gateway_legacy.py",
        "LEGACY_UPSTREAMS=http://10.0.0.5:8080,http://10.0.0.6:8080 "
        "wsgistack serve recipes.gateway_legacy:app --bind 127.0.0.1:8000",
    ): gateway,
    (
        "load_balance_pool.py",
        "UPSTREAMS=http://10.0.0.5:8000,http://10.0.0.6:8000 "
        "wsgistack serve recipes.load_balance_pool:app --bind 127.0.0.1:8000",
    ): pool_as_served,
    ("load_balance_pool.py", "python recipes/load_balance_pool.py"): pool_alone,
    (
        "mount_flask_and_django.py",
        "wsgistack serve recipes.mount_flask_and_django:app --bind 127.0.0.1:8000",
    ): mount,
    (
        "django_rate_limited_api.py",
        "wsgistack serve recipes.django_rate_limited_api:application --workers 4 "
        "--bind 127.0.0.1:8000",
    ): django_redis,
    (
        "gunicorn_app.py",
        "gunicorn 'recipes.gunicorn_app:app' --bind 127.0.0.1:8000 --workers 2",
    ): any_server,
    (
        "gunicorn_app.py",
        "gunicorn --paste recipes/site.ini --bind 127.0.0.1:8000 --workers 2",
    ): any_server,
    ("site.ini", "gunicorn --paste recipes/site.ini --bind 127.0.0.1:8000 --workers 2"): any_server,
    (
        "stack.toml",
        "wsgistack serve --config recipes/stack.toml --bind 127.0.0.1:8000",
    ): stack_toml,
}


def test_every_printed_command_has_a_check():
    assert sorted(CHECKS) == sorted(set(PRINTED) - {("stack.toml", CHECK_STACK)})


CHECK_STACK = "wsgistack check recipes/stack.toml"


def test_the_stack_file_checks_as_printed():
    assert ("stack.toml", CHECK_STACK) in PRINTED
    result = subprocess.run(
        [executable("wsgistack"), *shlex.split(CHECK_STACK)[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "recipes/stack.toml: ok"
    assert "RateLimiter('20/60s'" in result.stdout and "/boom ->" in result.stdout


@pytest.fixture
def ctx(request, tmp_path):
    """The loopback servers the recipes' environment variables point at."""
    upstreams = Upstreams()

    def answer(name: str):
        def app(environ, start_response):
            body = f"served by upstream {name}\n".encode()
            start_response(
                "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            )
            return [body]

        return app

    def legacy(environ, start_response):
        body = f"{environ['PATH_INFO']} {environ.get('HTTP_X_FORWARDED_PREFIX')}".encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    try:
        env = {}  # only variables the recipe says to set, only for its own commands
        if "UPSTREAMS=" in request.node.name:
            env["UPSTREAMS"] = ",".join(upstreams.start(name, answer(name)) for name in "AB")
        if "LEGACY_UPSTREAMS=" in request.node.name:
            env["LEGACY_UPSTREAMS"] = upstreams.start("legacy", legacy)
        if "django_rate_limited_api" in request.node.name:
            url = request.getfixturevalue("redis_server").url.rsplit("/", 1)[0] + "/8"  # its own
            redis.Redis.from_url(url).flushdb()
            env["RATE_LIMIT_STORE"] = url
        yield type("Ctx", (), {"upstreams": upstreams, "env": env, "home": tmp_path})
    finally:
        upstreams.close()


@pytest.mark.parametrize(
    ("recipe", "command"), sorted(CHECKS), ids=[f"{r}: {c}" for r, c in sorted(CHECKS)]
)
def test_the_printed_command_serves_what_the_recipe_says(recipe, command, ctx):
    run = Running(command, ctx.env, ctx.home)
    try:
        CHECKS[recipe, command](run, ctx)
    finally:
        returncode = run.stop()
    assert returncode == 0, run.log
