"""The ``wsgistack`` command: ``demo`` the toolkit, ``serve`` an app or a pipeline, ``check`` one.

$ wsgistack demo
$ wsgistack serve myapp:app --bind 127.0.0.1:8000
$ wsgistack check stack.toml          # or --config stack.toml, as serve names it
$ wsgistack check --paste site.ini
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .compose import describe
from .errors import ConfigError
from .loader import log_load_failure, working_directory
from .server.cli import add_serve, enter_chdir, served_source, settle_served
from .server.config import ServerConfig
from .server.flags import spelling_hints

__all__ = ["main"]

DESCRIPTION = (
    "A composable WSGI toolkit: demo its middlewares, serve an app or a pipeline,"
    " check a pipeline file. 'wsgistack COMMAND --help' tells more."
)


def _check(args: argparse.Namespace) -> int:
    named = [each for each in (args.file, args.config, args.paste) if each is not None]
    if len(named) != 1:
        raise ConfigError("give exactly one of FILE, --config FILE or --paste FILE")
    name = named[0]
    pipeline = args.file if args.file is not None else args.config
    # Its [server] table (or [server:main]) read as serve reads it, and the app
    # loaded where and with what serve loads it: the chdir, env and pythonpath.
    served, _ = enter_chdir(argparse.Namespace(app=None, config=pipeline, paste=args.paste), {})
    options, load, ini = served_source(served, {})
    # Its logging too ([loggers], log_config, error_log), as serve sets it up
    # before binding: a file serve would refuse is not ok here (log files are opened).
    settle_served(ServerConfig.from_options(**options), ini)
    try:
        app = load()
    except Exception as exc:
        if isinstance(exc, ConfigError) and exc.__cause__ is None:
            raise  # a bad option or name: one line from main()
        # The app's own code failed: its traceback and status 2, as serve reports it.
        _report_failure(name, exc)
        return 2
    print(f"{name}: ok")
    if ini is not None and ini.ignored is not None:
        print(f"{ini.given}: [server:main] uses {ini.ignored}: ignored by wsgistack serve")
    print(describe(app))
    return 0


def _report_failure(name: str, exc: BaseException) -> None:
    """check's report of an app that failed to load, on standard error.

    Wherever the file's logging (error_log, log_config) sends the rest: the
    person running check reads the reason here.
    """
    report = logging.getLogger("wsgistack.check")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    report.addHandler(handler)
    report.propagate = False
    report.setLevel(logging.ERROR)  # whatever level the file gives the wsgistack loggers
    try:
        log_load_failure(report, f"wsgistack check: {name}", exc)
    finally:
        report.removeHandler(handler)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.port)


def _port(text: str) -> int:
    """A TCP port for ``--port``, refused by argparse naming the option when out of range."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0: any free one)")
    return port


def _add_demo(commands: argparse._SubParsersAction) -> Callable[[argparse.Namespace], int]:
    parser = commands.add_parser(
        "demo",
        help="run the demo site: every middleware at work",
        description="Run the demo site on 127.0.0.1, no Redis needed: every middleware at work"
        " in front of a small site and two upstream servers of its own. It prints its"
        " pipeline and the URLs to try; Ctrl-C stops it.",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=8000,
        metavar="PORT",
        help="port on 127.0.0.1 (default 8000; 0 picks a free one)",
    )
    return _demo


def _add_check(commands: argparse._SubParsersAction) -> Callable[[argparse.Namespace], int]:
    parser = commands.add_parser(
        "check",
        help="load and validate a pipeline file or a PasteDeploy ini, print it",
        description="Load a TOML pipeline file as serve --config would (or a PasteDeploy"
        " ini as serve --paste would), checking its server options and building every"
        " layer and the app, and print the pipeline outermost first. Exit status 0 when"
        " it loads, 2 when it does not, with the reason.",
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="the TOML pipeline file")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the TOML pipeline file, named as serve --config names it (the same as FILE)",
    )
    parser.add_argument(
        "--paste",
        metavar="FILE",
        help="check a PasteDeploy ini instead, as serve --paste reads it: FILE or"
        " FILE#NAME for the app NAME",
    )
    return _check


#: Each subcommand: a function that adds its parser and returns its handler.
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], Callable[..., int]], ...] = (
    _add_demo,
    add_serve,
    _add_check,
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[..., int]]]:
    parser = argparse.ArgumentParser(prog="wsgistack", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Callable[..., int]] = {}
    for add in SUBCOMMANDS:
        handler = add(commands)
        handlers[list(commands.choices)[-1]] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a bad configuration)."""
    parser, handlers = build_parser()
    args, unrecognized = parser.parse_known_args(argv)
    if unrecognized:
        hints = spelling_hints(unrecognized) if args.command == "serve" else ""
        parser.error(
            f"unrecognized arguments: {' '.join(unrecognized)}" + (f" ({hints})" if hints else "")
        )
    # Like gunicorn: modules named in the config are importable from the working
    # directory, through a symlink as named (a reload then sees the new release).
    workdir = working_directory()
    if workdir not in sys.path:
        sys.path.insert(0, workdir)
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"wsgistack {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
