"""Every fenced block in README.md, checked: a README change that breaks a block fails CI.

Each block is one test id, ``<nearest heading>-<index>`` (``ratelimiter-1``), and
is checked by the checker of its language (``CHECKERS``); a block in a language
without a checker fails, so no block goes unchecked.

- ``python``: executed in a fresh namespace holding only the few names the
  README assumes (``flask_app``, ``django_application``, small named apps),
  then, where ``BEHAVIOUR`` has an entry, driven through webtest.
- ``toml``: parsed with tomllib and built as a pipeline; ``ini``: loaded with
  PasteDeploy.
- ``sh``: each command is recognised and checked: ``wsgistack check`` runs for
  real, ``wsgistack serve`` is parsed by the real CLI parser and ServerConfig,
  its app loaded, and served as printed in a subprocess (each bind moved to
  port 0 on loopback, or to a unix socket in a temporary directory), its app
  asked for a page, its unix sockets' ``--socket-mode`` and its ``--access-log
  -`` lines checked; ``curl`` lines must be URLs the demo prints; ``pip
  install`` extras must exist.
- ``nginx``: ``nginx -t`` on a config holding the block in ``http { server { } }``;
  ``tests/test_readme_nginx.py`` also serves each block in front of a live server.

A block whose first line is ``# name.py`` (``.toml``, ``.ini``) is a file: it
is written into a project directory (beside ``tests/readme_project``, which
holds the parts the README does not show, such as ``mysite/settings.py``),
which is on ``sys.path`` and is the working directory, so ``myapp:app`` and
``stack.toml`` mean in the test what they mean to a reader.

Redis: the README's ``redis://127.0.0.1:6379/0`` is replaced by the URL of the
real ``redis_server`` fixture (a database of its own), so the Redis store runs.
"""

from __future__ import annotations

import configparser
import dataclasses
import io
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from wsgiref.validate import validator

import pytest
import redis
from flask import Flask
from paste.deploy import loadapp
from webtest import TestApp

from tests.recipes.test_more_recipes import Served
from tests.server.nginx import uwsgi_params
from tests.server.served import poll
from wsgistack import build_pipeline, load_pipeline
from wsgistack.cli import build_parser
from wsgistack.demo import TRIES
from wsgistack.loader import load_app
from wsgistack.middlewares import LoadBalancer
from wsgistack.server.config import OPTIONS, ServerConfig, parse_bind

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
README_REDIS = "redis://127.0.0.1:6379/0"


# -- reading the README ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Block:
    id: str
    lang: str
    text: str
    line: int  # of the opening fence, 1-based

    @property
    def filename(self) -> str | None:
        """``myapp.py`` when the block opens with ``# myapp.py``: the block is that file."""
        first = self.text.split("\n", 1)[0]
        found = re.fullmatch(r"# ([\w/]+\.(?:py|toml|ini))", first.strip())
        return found.group(1) if found else None


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, named after the nearest heading above it."""
    blocks: list[Block] = []
    heading, counts = "top", {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = re.fullmatch(r"( *)```(\S*)\s*", line)
        if fence is None:
            title = re.fullmatch(r"#{1,6} +(.+)", line)
            if title:
                heading = slug(title.group(1))
            index += 1
            continue
        indent, lang = len(fence.group(1)), fence.group(2)
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][indent:] if lines[index].strip() else "")
            index += 1
        assert index < len(lines), f"README.md:{index - len(body)}: a block is never closed"
        counts[heading] = counts.get(heading, 0) + 1
        start = index - len(body)
        blocks.append(Block(f"{heading}-{counts[heading]}", lang, "\n".join(body) + "\n", start))
        index += 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


# -- the project a reader would have: README files plus tests/readme_project ----------------
@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("readme_project")
    shutil.copytree(ROOT / "tests" / "readme_project", directory, dirs_exist_ok=True)
    for block in BLOCKS:
        if block.filename:
            path = directory / block.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
    saved = os.environ.get("DJANGO_SETTINGS_MODULE")
    sys.path.insert(0, str(directory))
    try:
        yield directory
    finally:
        sys.path.remove(str(directory))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(directory)):
                del sys.modules[name]
        if saved is None:
            os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = saved


@pytest.fixture
def in_project(project, monkeypatch) -> Path:
    """Work as a reader would, in the project directory (Django's env var undone after)."""
    monkeypatch.chdir(project)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    return project


def subprocess_env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(ROOT)])
    return env


# -- the names python blocks assume -------------------------------------------------------
def named(name: str):
    """A tiny app answering with its own name (so tests see which app answered)."""

    def app(environ, start_response):
        body = name.encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def make_flask_app() -> Flask:
    """A real Flask app: the ``flask_app`` the middleware sections wrap."""
    app = Flask("readme_flask_app")

    @app.get("/")
    def home():
        return "flask home"

    @app.get("/admin/")
    def admin():
        return "flask admin"

    @app.get("/api/items")
    def items():
        return {"items": []}

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    @app.get("/timeout")
    def timeout():
        raise TimeoutError("upstream too slow")

    return app


def fresh_namespace(block: Block) -> dict:
    from tests.djangoapp import (
        application as django_application,
    )  # Django settings: one per process

    module = block.filename.removesuffix(".py").replace("/", ".") if block.filename else "readme"
    return {
        "__name__": module,
        "flask_app": make_flask_app(),
        "django_application": django_application,
        "docs_app": named("docs_app"),
        "tenants_app": named("tenants_app"),
        "legacy_app": named("legacy_app"),
        "local_app": named("local_app"),
    }


# -- what some blocks promise, beyond running ---------------------------------------------
def get(app, path: str, addr: str = "198.51.100.1", **kw):
    return TestApp(validator(app)).get(
        path, extra_environ={"REMOTE_ADDR": addr}, expect_errors=True, **kw
    )


def flask_wrapped(ns, ctx):
    app = ns["app"]
    assert get(app, "/").text == "hello"
    assert get(app, "/admin/", "203.0.113.9").status_int == 403
    assert get(app, "/admin/", "192.0.2.7").text == "admin dashboard"


def django_wrapped(ns, ctx):
    app = ns["application"]
    page = get(app, "/articles/hi/")
    assert page.json["self"] == "/articles/hi/" and "RateLimit" not in page.headers
    api = get(app, "/api/anything")
    assert api.headers["RateLimit-Policy"] == '"100-per-60s";q=100;w=60'


def composed(ns, ctx):
    lines = ctx.stdout.splitlines()
    assert lines[0].startswith("ErrorCatcher(")
    assert "ProxyFix" in lines[1] and lines[2].startswith("IPFilter(")
    assert lines[3].startswith("RateLimiter(") and "Flask.wsgi_app" in lines[4]
    assert get(ns["application"], "/", "10.1.2.3").text == "flask home"
    assert get(ns["application"], "/", "203.0.113.9").status_int == 403
    # ProxyFix takes the scheme only: a client cannot name an allowed address itself.
    spoofed = get(ns["application"], "/", "203.0.113.9", headers={"X-Forwarded-For": "10.1.2.3"})
    assert spoofed.status_int == 403


def toml_stack(ns, ctx):
    app = ns["application"]
    assert get(app, "/articles/hi/").json["self"] == "/articles/hi/"
    # mysite.wsgi:application limits /api itself: the file adds no second limiter.
    assert get(app, "/api/x").headers.getall("RateLimit-Policy") == ['"100-per-60s";q=100;w=60']
    assert get(app, "/admin/", "203.0.113.9").status_int == 403
    assert get(app, "/admin/", "10.0.0.2").status_int != 403


def paste_site(ns, ctx):
    app = ns["application"]
    assert get(app, "/").text == "hello"
    assert get(app, "/admin/", "203.0.113.9").status_int == 403


def error_catcher(ns, ctx):
    app = ns["flask_app"]
    boom = get(app, "/boom")
    error_id = boom.headers["X-Error-Id"]
    assert boom.status_int == 500 and error_id in boom.text and "secret" not in boom.text
    assert any(error_id in r.getMessage() for r in ctx.caplog.records if r.name == "myapp.alerts")
    assert get(app, "/timeout").status_int == 504


def ip_filter(ns, ctx):
    app = ns["flask_app"]
    office = {"X-Forwarded-For": "192.0.2.5"}
    assert get(app, "/admin/", "10.0.0.2", headers=office).text == "flask admin"  # via a balancer
    assert get(app, "/admin/", "203.0.113.9", headers=office).status_int == 403  # spoofed
    assert (
        get(app, "/admin/", "10.0.0.2", headers={"X-Forwarded-For": "203.0.113.9"}).status_int
        == 403
    )
    assert get(app, "/", "203.0.113.9").text == "flask home"


def dispatcher(ns, ctx):
    app = ns["application"]
    assert get(app, "/api/").text == "flask home"
    assert get(app, "/admin/articles/x/").json["self"] == "/admin/articles/x/"
    assert get(app, "/", headers={"Host": "docs.example.com:8080"}).text == "docs_app"
    assert get(app, "/v1/x", headers={"Host": "a.example.com"}).text == "tenants_app"
    assert get(app, "/apiv2").text == "legacy_app"


def dispatch_toml(ns, ctx):
    app = ns["application"]
    assert get(app, "/api/").text == "hello"
    assert get(app, "/admin/articles/x/", "203.0.113.9").status_int == 403
    assert get(app, "/admin/articles/x/", "10.0.0.1").json["self"] == "/admin/articles/x/"


def rate_limiter(ns, ctx):
    app = ns["flask_app"]
    api = get(app, "/api/items")
    assert api.json == {"items": []}
    assert api.headers["RateLimit-Policy"].startswith('"10-per-1s";q=10;w=1')
    assert redis.Redis.from_url(ctx.redis_url).dbsize() > 0  # the counts live in Redis
    assert "RateLimit" not in get(app, "/").headers


def load_balancer(ns, ctx):
    assert get(ns["application"], "/").text == "local_app"
    assert [(u["url"], u["weight"], u["backup"]) for u in ns["pool"].status()] == [
        ("http://10.0.0.5:8000", 1, False),
        ("http://10.0.0.6:8000/app", 2, False),
        ("http://10.0.0.9:8000", 1, True),
    ]


def server_in_code(ns, ctx):
    assert ctx.stdout == "b'hello'\n"


#: Block id -> what the block promises, checked after it ran (or was loaded).
BEHAVIOUR: dict[str, Callable[[dict, SimpleNamespace], None]] = {
    "wrapping-a-flask-app-1": flask_wrapped,
    "wrapping-a-django-project-1": django_wrapped,
    "compose-a-pipeline-in-request-order-1": composed,
    "pipelines-as-data-1": toml_stack,
    "pipelines-as-data-3": toml_stack,
    "pastedeploy-1": paste_site,
    "errorcatcher-1": error_catcher,
    "ipfilter-1": ip_filter,
    "prefixdispatcher-1": dispatcher,
    "prefixdispatcher-2": dispatch_toml,
    "ratelimiter-1": rate_limiter,
    "loadbalancer-1": load_balancer,
    "the-server-2": server_in_code,
}


# -- the checkers, one per language ----------------------------------------------------------
def check_python(block: Block, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("in_project")
    source, ctx = block.text, SimpleNamespace(redis_url=None, caplog=None, stdout="")
    if "redis://" in source:
        assert README_REDIS in source, f"write Redis URLs as {README_REDIS} (the test swaps it)"
        ctx.redis_url = request.getfixturevalue("redis_server").url.rsplit("/", 1)[0] + "/6"
        redis.Redis.from_url(ctx.redis_url).flushdb()
        source = source.replace(README_REDIS, ctx.redis_url)
    ctx.caplog = request.getfixturevalue("caplog")
    ns = fresh_namespace(block)
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            exec(compile(source, f"README.md:{block.line} ({block.id})", "exec"), ns)
        ctx.stdout = out.getvalue()
        if block.id in BEHAVIOUR:
            BEHAVIOUR[block.id](ns, ctx)
    finally:
        for value in ns.values():
            if isinstance(value, LoadBalancer):
                value.close()


def check_toml(block: Block, request: pytest.FixtureRequest) -> None:
    project = request.getfixturevalue("in_project")
    config = tomllib.loads(block.text)
    assert "app" in config, "a README TOML block is a pipeline: it needs an [app]"
    if block.filename:
        application = load_pipeline(project / block.filename)
    else:
        application = build_pipeline(config, source=block.id)
    if block.id in BEHAVIOUR:
        BEHAVIOUR[block.id]({"application": application}, SimpleNamespace())


def check_ini(block: Block, request: pytest.FixtureRequest) -> None:
    project = request.getfixturevalue("in_project")
    parser = configparser.ConfigParser()
    parser.read_string(block.text)
    mains = {"pipeline:main", "app:main", "composite:main"} & set(parser.sections())
    assert mains, "a README ini block is a full PasteDeploy config with a main section"
    path = project / (block.filename or f"{block.id}.ini")
    path.write_text(block.text)
    application = loadapp(f"config:{path}")
    if block.id in BEHAVIOUR:
        BEHAVIOUR[block.id]({"application": application}, SimpleNamespace())


def check_nginx(block: Block, request: pytest.FixtureRequest) -> None:
    tmp = request.getfixturevalue("tmp_path")
    shutil.copy(uwsgi_params(), tmp / "uwsgi_params")  # the stock file beside nginx.conf
    inner = "\n".join("        " + line for line in block.text.splitlines())
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"pid {tmp}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n"
        f"    access_log off;\n"
        + "".join(
            f"    {kind}_temp_path {tmp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    server {{\n        listen 127.0.0.1:8080;\n{inner}\n    }}\n}}\n"
    )
    result = subprocess.run(
        [NGINX, "-t", "-p", str(tmp), "-e", "stderr", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# -- sh: every command a reader would type --------------------------------------------------
def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def sh_pip(argv: list[str], request: pytest.FixtureRequest) -> None:
    assert argv[:3] == ["pip", "install", "-e"] and len(argv) == 4, argv
    found = re.fullmatch(r"\.(?:\[([\w,]+)\])?", argv[3])
    assert found, f"pip install -e {argv[3]}: expected . or .[extra]"
    extras = _pyproject()["project"]["optional-dependencies"]
    for extra in (found.group(1) or "").split(","):
        assert not extra or extra in extras, f"no extra {extra!r} in pyproject.toml"


def sh_pytest(argv: list[str], request: pytest.FixtureRequest) -> None:
    assert argv == ["pytest"], argv
    assert _pyproject()["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]


def demo_urls() -> list[str]:
    """The URLs ``wsgistack demo`` prints, on the port it listens on by default."""
    port = build_parser()[0].parse_args(["demo"]).port
    return [f"http://127.0.0.1:{port}{path}" for path, _ in TRIES]


def sh_curl(argv: list[str], request: pytest.FixtureRequest) -> None:
    urls = [word for word in argv[1:] if not word.startswith("-")]
    assert len(urls) == 1 and urls[0] in demo_urls(), f"{urls}: not a URL the demo prints"


#: Where each app a README ``serve`` line names shows that it is that app: (path, text).
PAGES = {
    "myapp:app": ("/", "hello"),
    "mysite.wsgi:application": ("/articles/hi/", '"self": "/articles/hi/"'),
    "stack.toml": ("/articles/hi/", '"self": "/articles/hi/"'),
}


def rebind(value: str, directory: Path) -> str:
    """A README bind moved where a test may listen: port 0 on loopback (0.0.0.0 and
    other hosts too), a unix socket of the same name in ``directory``."""
    bind = parse_bind(value)
    scheme = "uwsgi://" if value.startswith("uwsgi://") else ""
    if bind.kind == "unix":
        return f"{scheme}unix:{directory / Path(bind.path).name}"
    return f"{scheme}{'[::1]' if bind.host == '::1' else '127.0.0.1'}:0"


def _serve(args, argv: list[str], request: pytest.FixtureRequest) -> None:
    """Check the options as the CLI does, then serve the line for real and ask its app."""
    project = request.getfixturevalue("in_project")
    tmp = request.getfixturevalue("tmp_path")
    options = {k: v for k, v in vars(args).items() if k in OPTIONS and v is not None}
    config = ServerConfig.from_options(**options)
    assert (args.app is None) != (args.config is None), "give an app or --config"
    app = load_app(args.app) if args.app else load_pipeline(project / args.config)
    assert callable(app)
    words = argv[1:]
    for index, word in enumerate(words[:-1]):
        if word == "--bind":
            words[index + 1] = rebind(words[index + 1], tmp)
    stdout = tmp / "stdout"
    server = Served(
        "wsgistack.cli", *words, env=subprocess_env(project), cwd=project, stdout=stdout
    )
    try:
        path, text = PAGES[args.app or args.config]
        status, body = server.get(path)
        assert status == 200 and text in body, (status, body)
        for bind in ServerConfig.from_options(bind=[rebind(b, tmp) for b in args.bind or ()]).bind:
            if bind.kind == "unix" and config.socket_mode is not None:
                assert stat.S_IMODE(os.stat(bind.path).st_mode) == config.socket_mode
        if args.access_log == "-":
            poll(lambda: f'"GET {path} HTTP/1.1" 200' in stdout.read_text())
    finally:
        server.close()


def sh_wsgistack(argv: list[str], request: pytest.FixtureRequest) -> None:
    assert "wsgistack" in _pyproject()["project"]["scripts"]
    parser, _ = build_parser()
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"the CLI does not accept: {shlex.join(argv)}")
    if args.command == "serve":
        _serve(args, argv, request)
    elif args.command == "check":
        project = request.getfixturevalue("in_project")
        result = subprocess.run(
            [sys.executable, "-m", "wsgistack.cli", *argv[1:]],
            cwd=project,
            env=subprocess_env(project),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f"{args.file}: ok"
    else:  # demo: tests/test_demo.py runs it and fetches what it prints
        assert args.command == "demo" and args.port == 8000


SH_COMMANDS: dict[str, Callable[[list[str], pytest.FixtureRequest], None]] = {
    "pip": sh_pip,
    "pytest": sh_pytest,
    "curl": sh_curl,
    "wsgistack": sh_wsgistack,
}


def sh_commands(text: str) -> Iterator[list[str]]:
    """Each simple command of a shell block (lines joined at ``\\``, split at ``&&``)."""
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            yield words[:cut]
            words = words[cut + 1 :]


def unquoted_globs(line: str) -> str:
    """Glob characters outside quotes before any comment: zsh (macOS's shell) refuses
    ``--bind [::1]:8000`` with "no matches found", and bash may expand it."""
    found, quote, previous = [], "", " "
    for char in line:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            break
        elif char in "[]*?":
            found.append(char)
        previous = char
    return "".join(found)


def check_sh(block: Block, request: pytest.FixtureRequest) -> None:
    commands = list(sh_commands(block.text))
    assert commands, "an empty sh block"
    for line in block.text.splitlines():
        assert not unquoted_globs(line), f"quote the glob characters in: {line}"
    for argv in commands:
        assert argv[0] in SH_COMMANDS, f"no check for the command {argv[0]!r}: add one"
        SH_COMMANDS[argv[0]](argv, request)


CHECKERS: dict[str, Callable[[Block, pytest.FixtureRequest], None]] = {
    "python": check_python,
    "toml": check_toml,
    "ini": check_ini,
    "sh": check_sh,
    "nginx": check_nginx,
}


def check_block(block: Block, request: pytest.FixtureRequest) -> None:
    checker = CHECKERS.get(block.lang)
    assert checker is not None, (
        f"README.md:{block.line} ({block.id}): no check for ```{block.lang} blocks; "
        "add one to CHECKERS in tests/test_readme.py"
    )
    checker(block, request)


# -- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_readme_block(block: Block, request: pytest.FixtureRequest) -> None:
    check_block(block, request)


def test_every_behaviour_check_names_a_block():
    assert set(BEHAVIOUR) <= {block.id for block in BLOCKS}


def test_blocks_are_found_under_their_headings_even_indented():
    text = "## Try it\n\n```python\npass\n```\n\n- item\n\n  ```bash\n  ls\n  ```\n"
    blocks = readme_blocks(text)
    assert [(b.id, b.lang, b.text, b.line) for b in blocks] == [
        ("try-it-1", "python", "pass\n", 3),
        ("try-it-2", "bash", "ls\n", 9),
    ]


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        pytest.param("bash", "ls\n", id="unknown-language"),
        pytest.param("", "x\n", id="no-language"),
    ],
)
def test_a_block_nothing_checks_fails(lang, text, request):
    with pytest.raises(AssertionError, match="no check for"):
        check_block(Block("new-1", lang, text, 1), request)


@pytest.mark.parametrize(
    ("line", "globs"),
    [
        ("wsgistack serve app --bind [::1]:8000", "[]"),
        ("wsgistack serve app --bind '[::1]:8000'  # [::1] in a comment", ""),
        ("pip install -e '.[test]' && pytest", ""),
        ('curl "http://x/?a=1" http://x/?b', "?"),
    ],
)
def test_glob_characters_must_be_quoted(line, globs):
    assert unquoted_globs(line) == globs


def test_an_unknown_shell_command_fails(request):
    with pytest.raises(AssertionError, match="no check for the command 'docker'"):
        check_block(Block("new-1", "sh", "docker run wsgistack\n", 1), request)


def test_ci_runs_the_readme_test_command():
    # .ci/run: grep -m1 '# run the tests' README.md | sed 's/[[:space:]]*#.*$//'
    marked = [line for line in README.read_text().splitlines() if "# run the tests" in line]
    command = re.sub(r"\s*#.*$", "", marked[0])
    assert command == "pip install -e '.[test]' && pytest"
    assert "grep -m1 '# run the tests' README.md" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_begins_with_the_demo_then_the_tests():
    first = next(block for block in BLOCKS if block.lang == "sh")
    assert first.id == "two-commands-1"
    lines = first.text.splitlines()
    assert lines[0].split("#")[0].strip() == "pip install -e . && wsgistack demo"
    assert lines[1].endswith("# run the tests")


def _shown(value: object) -> str:
    """A ``ServerConfig`` default as the README's table shows it."""
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    if value is None:
        return "off"
    if value == "":
        return "''"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int) and value >= 1 << 20 and value % (1 << 20) == 0:
        return f"{value >> 20} MiB"
    return str(value)


def test_the_server_table_lists_every_serve_option_with_its_default():
    parser, _ = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    flags = {
        action.option_strings[-1]: action.dest
        for action in serve._actions
        if action.option_strings and action.dest not in ("help", "config")
    }
    rows = dict(re.findall(r"^\| `(--[\w-]+)` \| `?([^|`]*?)`? \|", README.read_text(), re.M))
    assert set(rows) == set(flags)
    defaults = ServerConfig()
    assert {flag: rows[flag] for flag in flags} == {
        flag: _shown(getattr(defaults, dest)) for flag, dest in flags.items()
    }


def test_the_tour_ends_behind_nginx_and_only_notes_for_developers_follow():
    headings = re.findall(r"^## (.+)$", README.read_text(), flags=re.M)
    assert headings[-2:] == ["Behind nginx", "Developing"]
