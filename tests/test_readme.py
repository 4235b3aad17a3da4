"""Every fenced block in README.md, checked: a README change that breaks a block fails CI.

Each block is one test id, ``<nearest heading>-<index>`` (``ratelimiter-1``), and
is checked by the checker of its language (``CHECKERS``); a block in a language
without a checker fails, so no block goes unchecked.  The parts live beside
this file: ``readme_blocks`` reads the blocks, ``readme_checkers`` holds the
checkers, ``readme_behaviour`` the ``BEHAVIOUR`` table, ``readme_fixtures``
the project directory; the tests are here.

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

import re

import pytest

from tests.readme_behaviour import BEHAVIOUR
from tests.readme_blocks import BLOCKS, README, ROOT, Block, readme_blocks
from tests.readme_checkers import check_block, unquoted_globs
from tests.readme_fixtures import in_project, project  # noqa: F401 (fixtures the checkers ask for)
from tests.recipes.test_run_lines import Running
from wsgistack.cli import build_parser
from wsgistack.server.config import ServerConfig


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
    if isinstance(value, tuple) and value:
        return ", ".join(str(item) for item in value)
    if value is None or value is False or value == ():  # --pid, --reload, --reload-extra-file
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
        if action.option_strings and action.dest not in ("help", "config", "paste")  # what to serve
    }
    rows = dict(re.findall(r"^\| `(--[\w-]+)` \| `?([^|`]*?)`? \|", README.read_text(), re.M))
    assert set(rows) == set(flags)
    defaults = ServerConfig()
    assert {flag: rows[flag] for flag in flags} == {
        flag: _shown(getattr(defaults, dest)) for flag, dest in flags.items()
    }


def test_the_paste_ini_names_our_server_with_options_it_takes(request):
    # The README's site.ini has a [server:main] for pserve; PasteDeploy builds it
    # through our paste.server_factory, which checks every option as it loads.
    from paste.deploy import loadserver

    text = " ".join(README.read_text().split())
    assert "`pserve site.ini`" in text and 'loadserver("config:/path/to/site.ini")(app)' in text
    directory = request.getfixturevalue("project")
    assert "egg:wsgistack#main" in (directory / "site.ini").read_text()
    assert callable(loadserver(f"config:{directory / 'site.ini'}"))


def test_the_tour_ends_behind_nginx_and_only_notes_for_developers_follow():
    headings = re.findall(r"^## (.+)$", README.read_text(), flags=re.M)
    assert headings[-2:] == ["Behind nginx", "Developing"]


#: How the PasteDeploy prose says each server serves site.ini (no block holds the
#: commands), and what each then logs: [server:main]'s 2 workers for ours.
PASTE_COMMANDS = {
    "wsgistack": (
        r"serve it with `(wsgistack serve --paste site\.ini)` from its directory",
        r"master \d+: starting 2 workers",
    ),
    "gunicorn": (r"`(gunicorn --paste site\.ini)` with gunicorn", r"Listening at"),
}


@pytest.mark.parametrize("server", PASTE_COMMANDS)
def test_the_paste_ini_serves_from_its_directory_as_printed(server, request, tmp_path):
    # Run the command as printed, in the directory holding the README's site.ini and
    # myapp_paste.py, on a free port: ours loads the app with loadapp in each worker.
    pattern, logged = PASTE_COMMANDS[server]
    command = re.search(pattern, " ".join(README.read_text().split()))
    assert command, f"the README no longer says how {server} serves site.ini: update this test"
    directory = request.getfixturevalue("project")
    run = Running(f"{command.group(1)} --bind 127.0.0.1:8000", {}, tmp_path, cwd=directory)
    try:
        assert run.get("/")[::2] == (200, "hello")
        assert run.get("/admin/")[0] == 403  # 127.0.0.1 is not the office
    finally:
        returncode = run.stop()
    assert returncode == 0, run.log
    assert re.search(logged, run.log), run.log
