"""The server's logging: standard error or ``--error-log``, or a ``--log-config`` file.

Rules: logging is set up in the master before it binds, so the workers
inherit it.  Without ``--log-config``, the root logger gets one handler with
our line (time with its zone, pid, level, message), writing to standard error
or to the ``--error-log`` file; the app's records reach it too.  A
``--log-config`` file says everything instead: an ini for ``fileConfig``
(as gunicorn's ``--log-config`` and a PasteDeploy ``[loggers]``), or a
``.json``/``.toml`` file holding a ``dictConfig`` dictionary.  A file that
fails to apply (at start-up or on SIGHUP) leaves the logging it found, and
the ``ConfigError`` names the file.  SIGUSR1 reopens every file handler of
the logging tree by its name, for logrotate.

    start_logging("info", error_log="/var/log/app/error.log")
    LogConfig.read("logging.ini").apply("info")    # again on SIGHUP
    reopen_log_files()                              # SIGUSR1
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import json
import logging
import logging.config
import os
import time
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import ConfigError, unreadable
from ..loader import raised
from .account import Account, give_log, give_log_to_reopen

__all__ = ["LogConfig", "apply_ini", "give_log_files", "reopen_log_files", "start_logging"]

log = logging.getLogger("wsgistack.server")

#: Our line, on standard error or in the --error-log file.
LINE = "%(asctime)s [%(process)d] %(levelname)s %(message)s"
#: The loggers ``--log-level`` sets when a --log-config file gives them no level.
OURS = ("wsgistack", "wsgistack.server")
#: Extensions of a file holding a ``dictConfig`` dictionary; any other is an ini.
DICT_FORMATS = (".json", ".toml")


class _ZonedFormatter(logging.Formatter):
    """Local time with its UTC offset (``2026-03-01 12:00:00,123 +0100``), as gunicorn's.

    An app may move its worker to another zone as it loads (Django sets ``TZ``
    from ``TIME_ZONE``): without the offset, its lines and the master's disagree
    by hours and nothing says so.
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        zone = time.strftime("%z", self.converter(record.created))
        return f"{super().formatTime(record, datefmt)} {zone}"


class _NotWrittenYet(logging.Filter):
    """Let through only records no handler on their way up has written to our stream.

    The server's handler is the root's, so the app's records reach it too.  An
    app may also give its own logger a console handler and let records go on
    up: Django's default logging does so with DEBUG on, and every "Not Found"
    and traceback came out twice.  gunicorn leaves the root alone; we keep our
    line (time, pid, level) for records nothing else wrote.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None and logger is not logging.root:
            for handler in logger.handlers:
                if (
                    isinstance(handler, logging.StreamHandler)
                    and handler.stream is self.stream
                    and record.levelno >= handler.level
                    and handler.filter(record)
                ):
                    return False
            logger = logger.parent if logger.propagate else None
        return True


#: The attribute marking the handler ``start_logging`` installed, and where it writes.
_ERROR_LOG = "wsgistack_error_log"


def start_logging(level: str, error_log: str = "-", log_config: str | None = None) -> bool:
    """Set up the process's logging, unless it has handlers already (pserve set them up).

    ``log_config``: that file decides (``LogConfig``); else our line goes to
    standard error (``-``) or appends to the ``error_log`` file, opened here.
    An ``error_log`` where the process's logging is set up already (pserve's
    ``[loggers]``, the program's own) would be lost: a ``ConfigError``.
    An ``error_log`` our own handler writes already (a second server in the
    process, the same file) changes nothing.  Returns whether it set something
    up; the server that asked remembers it (``processenv.Settled``).
    """
    if log_config is not None:
        LogConfig.read(log_config).apply(level)
        return True
    if logging.root.handlers:
        if any(getattr(h, _ERROR_LOG, None) == error_log for h in logging.root.handlers):
            return False  # ours, to the same place: set up by an earlier server
        if error_log != "-":
            raise ConfigError(
                f"error_log: {error_log!r}: this process's logging is set up already"
                " (pserve's [loggers], or the program's own): add a FileHandler there"
            )
        return False  # as basicConfig: pserve or an ini's [loggers] set it up
    handler: logging.StreamHandler[Any]
    if error_log == "-":
        handler = logging.StreamHandler()
        handler.addFilter(_NotWrittenYet(handler.stream))
    else:
        try:
            handler = logging.FileHandler(error_log, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"error_log: cannot open {error_log!r}: {exc.strerror}") from None
    handler.setFormatter(_ZonedFormatter(LINE))
    setattr(handler, _ERROR_LOG, error_log)
    logging.basicConfig(level=level.upper(), handlers=[handler])
    return True


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """A ``--log-config`` file, read and parsed; ``apply()`` installs it.

    ``settings`` is the ``dictConfig`` dictionary of a ``.json``/``.toml``
    file, None for an ini (``fileConfig`` reads it again as it applies it).
    """

    given: str
    settings: Mapping[str, Any] | None

    @classmethod
    def read(cls, given: str) -> LogConfig:
        """Read ``given``: a missing file or one that does not parse is a ``ConfigError``."""
        where = f"log_config: {given}"
        extension = os.path.splitext(given)[1].lower()
        try:
            with open(given, "rb") as file:
                text = file.read().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"log_config: {unreadable(given, exc)}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: not UTF-8 text: {exc.reason}") from None
        if extension not in DICT_FORMATS:
            _check_ini(text, where)
            return cls(given, None)
        try:
            settings = json.loads(text) if extension == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            kind = "JSON" if extension == ".json" else "TOML"
            raise ConfigError(f"{where}: not valid {kind}: {exc}") from None
        if not isinstance(settings, dict) or "version" not in settings:
            raise ConfigError(
                f"{where}: expected a logging.config.dictConfig dictionary, with version = 1"
            )
        return cls(given, settings)

    def apply(self, level: str) -> None:
        """Install the file's logging; ``level`` then for our loggers the file gives none.

        Loggers that exist (ours, the app's) are kept unless the file names
        them (``disable_existing_loggers`` defaults to false here, in a
        dictionary too).  If the file fails to apply, the logging as it was
        is put back and the ``ConfigError`` names the file and the problem.
        """
        with _kept_on_failure(f"log_config: {self.given}"):
            for name in OURS:  # so that a level here afterwards is the file's
                logging.getLogger(name).setLevel(logging.NOTSET)
            if self.settings is None:
                _file_config(self.given, None)
            else:
                logging.config.dictConfig({"disable_existing_loggers": False, **self.settings})
        if all(logging.getLogger(name).level == logging.NOTSET for name in OURS):
            logging.getLogger(OURS[0]).setLevel(level.upper())


def apply_ini(path: str, where: str, defaults: Mapping[str, str] | None = None) -> None:
    """``fileConfig`` of ``path``, existing loggers kept; ``where`` names it in the error.

    Shared by ``--log-config`` and a ``--paste`` ini's ``[loggers]``; the
    logging as it was stays if the file does not apply.
    """
    with _kept_on_failure(where):
        _file_config(path, defaults)


def _file_config(path: str, defaults: Mapping[str, str] | None) -> None:
    logging.config.fileConfig(path, defaults, disable_existing_loggers=False)


def _check_ini(text: str, where: str) -> None:
    """Refuse an ini ``fileConfig`` would refuse for its form, before anything is torn down."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ConfigError(f"{where}: not a valid ini file: {' '.join(str(exc).split())}") from None
    missing = [name for name in ("loggers", "handlers", "formatters") if name not in parser]
    if missing:
        raise ConfigError(
            f"{where}: no [{missing[0]}] section (a logging.config.fileConfig ini; a"
            f" dictConfig dictionary goes in a {' or '.join(DICT_FORMATS)} file)"
        )


@contextlib.contextmanager
def _kept_on_failure(where: str) -> Iterator[None]:
    """Run a ``fileConfig``/``dictConfig``; if it raises, put the logging back as it was.

    Both close every handler before they build the new ones, so a bad class
    or a file that cannot be opened would otherwise leave the loggers with
    closed handlers (or none).  A closed file handler opens its file again at
    its next line; the handlers the failed attempt made are closed.
    """
    saved = [
        (each, each.level, list(each.handlers), each.propagate, each.disabled)
        for each in _loggers()
    ]
    registry: Any = logging._handlers  # type: ignore[attr-defined]
    order: Any = logging._handlerList  # type: ignore[attr-defined]
    handlers, handler_order = dict(registry), list(order)
    try:
        yield
    except Exception as exc:
        made = [each for name, each in registry.items() if handlers.get(name) is not each]
        for each, level, kept, propagate, disabled in saved:
            each.setLevel(level)
            each.handlers[:] = kept
            each.propagate, each.disabled = propagate, disabled
        registry.clear()
        registry.update(handlers)
        order[:] = handler_order
        for handler in made:
            with contextlib.suppress(Exception):
                handler.close()
        cause = f": {raised(exc.__cause__)}" if exc.__cause__ is not None else ""
        raise ConfigError(f"{where}: {raised(exc)}{cause}") from None


def give_log_files(account: Account | None) -> None:
    """At start-up, with --user: give each file the logging writes to the account.

    The process made them as root (--error-log's, --log-config's handlers);
    left root's, a worker, or the ``--workers 0`` process once it switched,
    could not open them again on SIGUSR1.  As gunicorn gives its error log.
    """
    for handler in _file_handlers():
        give_log(handler.baseFilename, account, "log file")


def reopen_log_files(account: Account | None = None, access_log: str | None = None) -> None:
    """Open each file handler's file again by its name (SIGUSR1: logrotate moved it away).

    Lines keep going to the old file until the new one is open, and stay
    there if it cannot be opened (logged).  Always in append mode: a handler
    made with ``mode="w"`` must not empty the file it reopens.  In the
    master, with ``--user``: the files (and ``access_log``) are created and
    given to the ``account`` first, for its workers to reopen them next.
    """
    handlers = _file_handlers()
    give_log_to_reopen(access_log, account)
    for handler in handlers:
        give_log_to_reopen(handler.baseFilename, account, "log file")
    for handler in handlers:
        try:
            stream = open(handler.baseFilename, "a", encoding=handler.encoding)  # noqa: SIM115
        except OSError as exc:
            log.error(
                "cannot reopen the log file %r, still writing to the old one: %s",
                handler.baseFilename,
                exc.strerror,
            )
            continue
        handler.acquire()
        try:
            old, handler.stream = handler.stream, stream
        finally:
            handler.release()
        if old is not None:
            with contextlib.suppress(OSError):
                old.close()


def _loggers() -> list[logging.Logger]:
    """The root and every logger made so far (not the placeholders of their parents)."""
    made = logging.root.manager.loggerDict.values()
    return [logging.root, *(each for each in made if isinstance(each, logging.Logger))]


def _file_handlers() -> list[logging.FileHandler]:
    found: dict[int, logging.FileHandler] = {}
    for each in _loggers():
        for handler in each.handlers:
            if isinstance(handler, logging.FileHandler):
                found[id(handler)] = handler
    return list(found.values())
