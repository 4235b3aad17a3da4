"""``wsgistack serve``: serve a ``module:app``, a pipeline file or a PasteDeploy ini.

$ wsgistack serve myapp:app --bind 127.0.0.1:8000 --workers 2 --threads 8
$ wsgistack serve --config stack.toml
$ wsgistack serve --paste site.ini#main
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..loader import app_failed, load_app, log_load_failure, working_directory
from ..pasteini import PasteIni, read_paste_ini
from ..pipeline import SERVER_TABLE, load_pipeline, read_pipeline
from .child import finish_as_python_does
from .config import ServerConfig, layered_options
from .flags import ACTIONS, FLAGS
from .listener import describe_listener
from .logsetup import LogConfig
from .notify import Notify
from .options import OPTIONS
from .preload import load_at_terminal
from .processenv import Settled
from .reconfig import Reread
from .server import Server

__all__ = [
    "add_serve",
    "enter_chdir",
    "pipeline_options",
    "serve_announced",
    "served_source",
    "settle_served",
]

#: The ways an app is named, as gunicorn names it (see loader.load_app).
APP_FORMS = (
    "module:attr (myapp:app), module (its 'application': mysite.wsgi)"
    " or module:factory(...) with literal arguments (myapp:create_app('prod'))"
)


def _serve(args: argparse.Namespace) -> int:
    spec = _named(args)
    flags = {name: getattr(args, name) for name, *_ in FLAGS if getattr(args, name) is not None}
    args, workdir = enter_chdir(args, flags)
    # A missing or broken file, a bad [server] option: one line, before binding.
    options, load, ini = served_source(args, flags)
    config = ServerConfig.from_options(**options)  # validate before loading the app
    settled = settle_served(config, ini)  # handed to the Server: it settles again, as a no-op
    if ini is not None and ini.ignored is not None:
        logging.getLogger("wsgistack.server").info(
            "%s: [server:main] uses %s, not wsgistack's server: its options are ignored",
            ini.given,
            ini.ignored,
        )
    # Read (and unset) before any of the app's code runs, with --workers 0 too.
    notify = Notify.from_environ()
    loader = functools.partial(_load_in, workdir, load, spec)
    if config.workers == 0:
        try:
            if config.account() is not None:  # binds as root, then loads as the user
                return serve_announced(
                    Server(loader=_Loading(loader), notify=notify, settled=settled, **options)
                )
            app = load_at_terminal(loader)  # errors show here, before binding
        except KeyboardInterrupt:
            logging.getLogger("wsgistack.server").info(
                "wsgistack serve: interrupted while loading the app"
            )
            return _end_interrupted()
        except _LoadFailed as failed:
            log_load_failure(logging.getLogger("wsgistack.server"), "wsgistack serve", failed.exc)
            return 2
        except Exception as exc:
            if isinstance(exc, ConfigError) and exc.__cause__ is None:
                raise  # a bad spec: one line from main(), as for any bad option
            # The app's own code failed: with its traceback and status 2, as a
            # master reports a worker's.
            log_load_failure(logging.getLogger("wsgistack.server"), "wsgistack serve", exc)
            return 2
        server = Server(app, notify=notify, settled=settled, **options)
    else:
        # Workers load it (SIGHUP reloads the code), or with --preload the master
        # does once it has bound; SIGHUP reads the file again either way.
        reread = None
        if args.app is None or config.log_config is not None:  # a file to read again
            reread = functools.partial(_read_again, args, flags, workdir, settled)
        server = Server(loader=loader, reread=reread, notify=notify, settled=settled, **options)
    try:
        return serve_announced(server)
    except KeyboardInterrupt:
        if not (config.preload and config.workers):
            raise
        # A Ctrl-C while the master loaded the app (the arbiter handles SIGINT).
        logging.getLogger("wsgistack.server").info(
            "wsgistack serve: interrupted while loading the app"
        )
        return _end_interrupted()


class _LoadFailed(Exception):
    """The app's own code failed as it loaded after the bind (--workers 0 with --user)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(str(exc))
        self.exc = exc


@dataclasses.dataclass(frozen=True)
class _Loading:
    """``load_at_terminal(load)``, its app's failures told apart from the server's own."""

    load: Callable[[], Any]

    def __call__(self) -> Any:
        try:
            return load_at_terminal(self.load)
        except Exception as exc:
            if isinstance(exc, ConfigError) and exc.__cause__ is None:
                raise  # a bad spec: one line, as for any bad option
            raise _LoadFailed(exc) from exc


def enter_chdir(args: argparse.Namespace, flags: dict[str, Any]) -> tuple[argparse.Namespace, str]:
    """Move to --chdir's (or the served file's ``chdir``) directory; ``args`` and the directory.

    First of all, before the options are checked: their relative paths, and
    the app's modules, are from there, while the --config or --paste file
    named on the command line stays named from where it runs (``args``).
    """
    workdir = working_directory()
    if "chdir" in flags:  # a path typed here is from here, as any the shell takes
        flags["chdir"] = os.path.join(workdir, flags["chdir"])
    if (chdir := _chdir_first(args, flags)) is not None:
        args = _named_from(args, workdir)
        os.chdir(chdir)
        if chdir not in sys.path:
            sys.path.insert(0, chdir)  # the app's modules, as gunicorn's --chdir
        workdir = chdir
    return args, workdir


def _chdir_first(args: argparse.Namespace, flags: Mapping[str, Any]) -> str | None:
    """--chdir, or the ``chdir`` of the file served, checked; None if neither gives one.

    Read before the rest of the options, which may name files in it.  A
    ``chdir`` the file gives wrongly is left for the file's own check to name.
    """
    if "chdir" in flags:
        return OPTIONS["chdir"](flags["chdir"])  # type: ignore[no-any-return]
    table: Any = {}
    if args.config is not None:
        table = read_pipeline(args.config).get(SERVER_TABLE, {})
    elif args.paste is not None:
        table = read_paste_ini(args.paste, working_directory()).server or {}
    if not isinstance(table, Mapping) or table.get("chdir") is None:
        return None
    try:
        return OPTIONS["chdir"](table["chdir"])  # type: ignore[no-any-return]
    except ConfigError:
        return None


def _named_from(args: argparse.Namespace, directory: str) -> argparse.Namespace:
    """``args`` with its --config or --paste file named from ``directory``, before a --chdir."""
    named = {
        name: os.path.join(directory, getattr(args, name))
        for name in ("config", "paste")
        if getattr(args, name) is not None
    }
    return argparse.Namespace(**{**vars(args), **named})


def _named(args: argparse.Namespace) -> str:
    """What the command line names to serve: APP, --config's or --paste's file; exactly one."""
    named = [value for value in (args.app, args.config, args.paste) if value is not None]
    if len(named) != 1:
        raise ConfigError("give exactly one of APP, --config FILE or --paste FILE")
    return named[0]


def served_source(
    args: argparse.Namespace, options: dict[str, Any], workdir: str | None = None
) -> tuple[dict[str, Any], Callable[[], Any], PasteIni | None]:
    """The server's options with the file's under them, the app's loader, and the ini if any.

    ``workdir``: where a relative file is, on a reload (the directory as the
    workers see it, a deploy's ``current`` symlink followed afresh).
    """
    load: Callable[[], Any]
    if args.config is not None:
        path = args.config if workdir is None else os.path.join(workdir, args.config)
        options = pipeline_options(path, options)
        load, ini, served = functools.partial(load_pipeline, args.config), None, args.config
    elif args.paste is not None:
        ini = read_paste_ini(args.paste, workdir or working_directory())
        options, load, served = ini.server_options(options), ini.load_app, ini.path
    else:
        return options, functools.partial(load_app, args.app), None
    if options.get("reload"):  # the file served is the app's code too (also after a SIGHUP)
        options["reload_extra_file"] = (*options.get("reload_extra_file", ()), served)
    return options, load, ini


def _read_again(
    args: argparse.Namespace, flags: Mapping[str, Any], workdir: str, settled: Settled
) -> Reread:
    """SIGHUP: the file served (or --log-config's) read again, under the same flags, unapplied.

    The master first enters ``workdir`` again, as the new workers will: after
    a deploy switched a ``current`` symlink, the file's relative paths (the
    certificate, the pid file) name the new release's files, not those of
    the release the master started in.
    """
    try:
        os.chdir(workdir)
    except OSError as exc:
        raise ConfigError(
            f"cannot enter the working directory {workdir!r} again: {exc.strerror}"
        ) from None
    options, _, ini = served_source(args, dict(flags), workdir)
    config = ServerConfig.from_options(**options)
    if args.config is not None:
        source = os.path.join(workdir, args.config)  # as read (served_source): the same name
    elif args.paste is not None:
        source = args.paste.partition("#")[0]  # read_paste_ini names it as given
    else:
        source = str(config.log_config)  # APP with --log-config: only that file is read
    return Reread(config, source, functools.partial(_relog, ini, config, settled))


def _relog(ini: PasteIni | None, config: ServerConfig, settled: Settled) -> None:
    """SIGHUP's logging: --log-config's file or the ini's ``[loggers]`` again, else the level."""
    if config.log_config is not None:
        LogConfig.read(config.log_config).apply(config.log_level)
    elif ini is not None and ini.has_loggers:
        ini.configure_logging()
        settled.start_logging(config.log_level)  # as at start: ours where the root has no handler
    else:
        logging.getLogger().setLevel(config.log_level.upper())


def settle_served(config: ServerConfig, ini: PasteIni | None) -> Settled:
    """Before any import: ``settle`` (--env, --pythonpath, ...), then the logging; what it set.

    The logging is --log-config's, or the ini's ``[loggers]``, or ours (to
    standard error or --error-log's file); ``wsgistack check`` sets up the
    same, so a file serve would refuse is not called ok.
    """
    settled = Settled()
    settled.settle(config)
    if ini is not None and config.log_config is None:  # --log-config wins, as gunicorn's
        _check_ini_logging(ini, config)
        ini.configure_logging()  # the file's [loggers] first: start_logging then adds nothing
    settled.start_logging(config.log_level, config.error_log, config.log_config)
    return settled


def _check_ini_logging(ini: PasteIni, config: ServerConfig) -> None:
    """Refuse --error-log with an ini whose ``[loggers]`` say where lines go already."""
    if ini.has_loggers and config.error_log != "-":
        raise ConfigError(
            f"error_log: {config.error_log!r} with {ini.given}'s [loggers], which say where"
            " lines go; give one of them"
        )


def pipeline_options(path: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The server options of pipeline file ``path``'s ``[server]`` table, ``overrides`` winning."""
    table = read_pipeline(path).get(SERVER_TABLE, {})
    return layered_options(table, f"{path}: [{SERVER_TABLE}]", overrides)


def serve_announced(server: Server) -> int:
    """Bind, log a ``listening on`` line per socket, and serve until stopped."""
    server.bind()
    for sock, bind in zip(server.listeners, server.config.bind, strict=True):
        logging.getLogger("wsgistack.server").info(
            "listening on %s", describe_listener(sock, bind, server.config.tls_for(bind))
        )
    return server.serve_forever()


def _load_in(workdir: str, load: Callable[[], Any], spec: str) -> Any:
    """Load the app from ``workdir`` (in each worker, after the fork).

    Through a symlink, that is the release it points to at this load: after a
    deploy switched it, SIGHUP's new workers run in the new release.  What the
    app's code raises is named by ``spec`` and its type, as gunicorn does.
    """
    os.chdir(workdir)
    try:
        return load()
    except ConfigError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        # A KeyboardInterrupt here is the app's own (a worker notes a SIGINT
        # rather than raise it; load_at_terminal tells a Ctrl-C apart): a
        # load failure, as its SystemExit is, not a worker dying with status 1.
        raise app_failed(spec, exc) from exc


def _end_interrupted() -> int:
    """End as Python ends a program a Ctrl-C stopped: exit handlers run, then killed by SIGINT.

    Killed, not exiting 130: a shell running a script then stops the script
    too, rather than think the program handled the Ctrl-C (a shell shows the
    status as 130 either way).  130 is returned should SIGINT be blocked.
    """
    finish_as_python_does()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    return 128 + signal.SIGINT


def add_serve(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> Callable[[argparse.Namespace], int]:
    """Add the ``serve`` subcommand; returns its handler."""
    parser = commands.add_parser(
        "serve",
        help="serve a WSGI app, a pipeline file or a PasteDeploy ini",
        description="Serve a WSGI app, the pipeline a TOML file declares, or the app of a"
        " PasteDeploy ini file, with a prefork master (--workers) and request threads in"
        " each worker.",
    )
    parser.add_argument("app", nargs="?", metavar="APP", help=f"the WSGI app: {APP_FORMS}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML pipeline file to serve, instead of APP; its [server] table sets the"
        " options below by their names (max_body_size = 1048576), and a flag given here"
        " wins over the file",
    )
    parser.add_argument(
        "--paste",
        metavar="FILE",
        help="a PasteDeploy ini file to serve, instead of APP: its [app:main] (or"
        " [pipeline:main], ...), or FILE#NAME for the app NAME, loaded in each worker"
        " (with --preload, once in the master) as paste.deploy.loadapp loads it (needs"
        " PasteDeploy). A [server:main] that uses"
        " egg:wsgistack#main sets the options below (host and port, or listen, for"
        " --bind), a flag given here winning; another server's [server:main] (waitress,"
        " gunicorn) is ignored, as gunicorn --paste ignores it. A [loggers] section sets"
        " up logging, as pserve and gunicorn do",
    )
    for name, metavar, text in FLAGS:
        flags = [*(["-e"] if name == "env" else []), "--" + name.replace("_", "-")]
        action = ACTIONS.get(name, "store")
        if action == "store_true":  # None when not given: a file's value stands
            parser.add_argument(*flags, action=action, default=None, help=text)
        else:
            parser.add_argument(*flags, action=action, metavar=metavar, help=text)
    return _serve
