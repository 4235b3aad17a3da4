"""The checker of each README block language (``CHECKERS``), and of each sh command.

``check_block`` fails for a language without a checker, so no block goes unchecked.
"""

from __future__ import annotations

import configparser
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

import pytest
import redis
from paste.deploy import loadapp

from tests.readme_behaviour import BEHAVIOUR, fresh_namespace
from tests.readme_blocks import ROOT, Block
from tests.readme_fixtures import subprocess_env
from tests.recipes.test_more_recipes import Served
from tests.server.nginx import uwsgi_params
from tests.server.served import poll
from wsgistack import build_pipeline, load_pipeline
from wsgistack.cli import build_parser
from wsgistack.demo import TRIES
from wsgistack.loader import load_app
from wsgistack.middlewares import LoadBalancer
from wsgistack.server.bind import parse_bind
from wsgistack.server.config import ServerConfig
from wsgistack.server.options import OPTIONS

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
README_REDIS = "redis://127.0.0.1:6379/0"


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
    "site.ini": ("/", "hello"),
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
    named = [value for value in (args.app, args.config, args.paste) if value is not None]
    assert len(named) == 1, "give an app, --config or --paste"
    if args.paste:
        app = loadapp(f"config:{project / args.paste}")
    else:
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
        path, text = PAGES[named[0]]
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
        "add one to CHECKERS in tests/readme_checkers.py"
    )
    checker(block, request)
