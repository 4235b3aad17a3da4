"""``Server`` and ``serve()``: the programmatic face of the reference server.

In-process (``workers=0``), e.g. in tests: the sockets are bound before the
``with`` body runs, so ``server.url`` is ready and no sleep is needed.

    with Server(app, bind="127.0.0.1:0", workers=0) as server:
        urllib.request.urlopen(server.url + "/")

``serve(app, bind="0.0.0.0:8000", workers=2)`` blocks: a prefork master for
``workers >= 1``, a single in-process worker for ``workers=0``.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..errors import ConfigError
from .access import check_access_log
from .activation import activated, listen_fds
from .arbiter import Arbiter
from .bind import Bind
from .config import ServerConfig
from .listener import (
    among,
    close_listeners,
    describe_listener,
    describe_socket,
    open_listeners,
    unopen,
)
from .logsetup import give_log_files
from .mainthread import note_signals, run_in_main_thread
from .notify import Notify
from .pidfile import PidFile
from .preload import forked_from, load_in_master, note_reload
from .processenv import Settled
from .reconfig import Reread, changes, check_reload, keep_or_open, retune
from .statsd import check_statsd, master_metrics
from .worker import Worker

__all__ = ["Server", "serve"]

log = logging.getLogger("wsgistack.server")


class Server:
    """A WSGI server for ``app``; keyword options are those of ``ServerConfig``.

    ``loader`` instead of ``app``: a function returning the app, called in each
    worker after the fork, so SIGHUP reloads the code (the CLI uses this); with
    ``preload=True``, called once in the master after the bind, and every
    worker forks from the app it returned (``preload.py``).
    ``reread``: a function that reads the configuration again (``Reread``),
    so SIGHUP also applies the options a file now holds (the CLI's
    ``--config`` and ``--paste``); the ``options`` given here are only the
    first ones.
    ``notify``: systemd's notification socket (``notify.py``), when the caller
    read it before loading the app; else ``serve_forever`` reads it (in the
    main thread), before the app loads or a worker forks.
    ``settled``: what the caller's ``settle`` set in the process before
    loading the app (the CLI's, pserve's: ``processenv.py``); else the server
    keeps its own record, from its first ``bind()`` on.

    ``bind()`` opens the listening sockets (``addresses``/``url`` are known
    from then on, and keep naming them after a stop or ``close()``, until the
    next bind); ``serve_forever()`` blocks; ``start()`` (or ``with
    Server(...)``) serves in a background thread (``workers=0`` only) until
    ``close()`` (or the end of the ``with``) stops it gracefully.  A server
    serves once per ``close()``: starting it again before is a ``RuntimeError``.
    """

    def __init__(
        self,
        app: Callable[..., Any] | None = None,
        /,
        *,
        loader: Callable[[], Callable[..., Any]] | None = None,
        reread: Callable[[], Reread] | None = None,
        notify: Notify | None = None,
        settled: Settled | None = None,
        **options: Any,
    ) -> None:
        if (app is None) == (loader is None):
            raise ConfigError("app: give either an app or a loader")
        if app is not None and not callable(app):
            raise ConfigError(f"app: {app!r} is not a WSGI application (not callable)")
        self.app = app
        self.loader: Callable[[], Callable[..., Any]] = loader or (lambda: app)  # type: ignore[assignment,return-value]
        self.config = ServerConfig.from_options(**options)
        self._reread = reread
        self._notify = notify
        self._settled = settled or Settled()  # --env's record, changed by SIGHUP
        if self.config.reload and app is not None:
            raise ConfigError(
                "reload: needs Server(loader=...): an app already loaded here would be"
                " forked again with its old code (pserve: use pserve --reload)"
            )
        self._workers_given = "workers" in options
        self._bind_given = "bind" in options
        #: The descriptors systemd passed (socket activation), read as it binds.
        self._passed: tuple[int, ...] = ()
        self.listeners: list[socket.socket] = []
        #: Each listener's (host, port) as bound, kept once a stop has closed them.
        self._bound: list[tuple[str, int]] = []
        self._unix: list[bool] = []  # each listener: a unix socket?
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._pid_file: PidFile | None = None  # removed by close()
        self._started = False  # by start() or serve_forever(), until close()

    def __repr__(self) -> str:
        binds = ", ".join(str(bind) for bind in self.config.bind)
        target = repr(self.app) if self.app is not None else f"loader={self.loader!r}"
        return f"Server({target}, bind=[{binds}], workers={self.config.workers})"

    def bind(self) -> None:
        """Open the listening sockets (idempotent).

        Under socket activation (``LISTEN_PID``/``LISTEN_FDS``, see
        ``activation.py``) the sockets systemd passed are served instead of
        the configured binds, unless those are all ``fd://N``.
        """
        if not self.listeners:
            self._settled.settle(self.config)
            check_access_log(self.config)
            give_log_files(self.config.account())
            check_statsd(self.config)
            if self.config.pid is not None:
                PidFile.check(self.config.pid)  # a second start is refused before it binds
            self._passed = self._passed or listen_fds()
            self.config, said = activated(self.config, self._passed, bind_given=self._bind_given)
            if said:
                log.info("%s", said)
            self.listeners = open_listeners(
                self.config.bind,
                self.config.backlog,
                self.config.socket_mode,
                self.config.account(),
            )
            self._note_bound()

    def _note_bound(self) -> None:
        self._bound = [describe_socket(sock) for sock in self.listeners]
        self._unix = [sock.family == socket.AF_UNIX for sock in self.listeners]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each listener as bound (a unix socket: (path, 0)), in --bind order.

        Kept after ``stop()`` and ``close()`` (which close the sockets), as
        ``socketserver``'s ``server_address`` is, so a program can still say
        where it served; empty before the first ``bind()``.
        """
        return list(self._bound)

    @property
    def url(self) -> str:
        """``http(s)://host:port`` of the first TCP listener speaking HTTP (also once stopped)."""
        if not self._bound:
            raise RuntimeError("Server.url: not bound yet; call bind() or start() first")
        for (host, port), unix, bind in zip(self._bound, self._unix, self.config.bind, strict=True):
            if not unix and bind.protocol != "uwsgi":
                scheme = "https" if self.config.tls_for(bind) else "http"
                return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
        raise ConfigError("bind: no HTTP TCP listener, so there is no URL")

    def serve_forever(self) -> int:
        """Serve until SIGTERM/SIGINT/SIGQUIT (or ``stop()``); returns the exit status.

        In process (``workers=0``) and in the main thread, SIGHUP stops
        gracefully too (there is no master to reload; its terminal closed),
        unless it was ignored at start (``nohup``); the previous handlers are
        back afterwards.  A signal that comes while it binds, writes the pid
        file or (``workers=0``) loads the app is acted on once it serves.
        """
        if self.config.workers and threading.current_thread() is not threading.main_thread():
            # A master needs the signals (SIGCHLD, SIGTERM, SIGHUP), which Python
            # delivers to the main thread only: it failed with signal's ValueError.
            raise ConfigError(
                f"workers: a prefork master (workers={self.config.workers}) runs in the"
                " main thread; in another thread serve with workers=0"
            )
        self._claim("serve_forever")
        main = threading.current_thread() is threading.main_thread()
        early: list[int] = []  # signals before the server's handlers are in
        outer = note_signals(early) if main else {}
        try:
            # systemd's Type=notify, read (and unset) before the app loads or a worker forks.
            notify = self._notify or (Notify.from_environ() if main else Notify(None))
            self.bind()
            if self.config.pid is not None:  # after bind: a failed start leaves none
                self._pid_file = PidFile.create(self.config.pid)
            if self.config.workers:
                load = self.loader
                if self.config.preload and self.app is None:
                    app = load_in_master(self.loader)  # signals meanwhile are in ``early``
                    if app is None:
                        return 2
                    load = forked_from(app)  # what every worker runs
                arbiter = Arbiter(
                    load,
                    self.config,
                    self.listeners,
                    reconfigure=self._reconfigure,
                    notify=notify,
                    restore=self._restore,
                )
                metrics = master_metrics(self.config, notify)  # the worker gauge, log counts
                try:
                    return arbiter.run(early=early)
                finally:
                    if metrics is not None:
                        metrics.close()
            if (account := self.config.account()) is not None:
                account.switch()  # bound as root; the app loads and serves as the user
            beat = notify.beat if notify.watchdog_every else None  # WatchdogSec=: the loop turns
            self._worker = Worker(self.loader(), self.config, self.listeners, heartbeat=beat)
            if not main:
                self._worker.run()
                return 0
            # SIGHUP in outer: not ignored at start (nohup), so a hangup stops it.
            run_in_main_thread(self._worker, notify, early, hang_up_stops=signal.SIGHUP in outer)
            return 0
        finally:
            self.close()  # removes the pid file too
            for sig, handler in outer.items():
                signal.signal(sig, handler)

    def _reconfigure(
        self, held: list[tuple[Bind, socket.socket]], closed: frozenset[int]
    ) -> tuple[ServerConfig, list[socket.socket]]:
        """SIGHUP's configuration, read, bound and applied: the master's new config and listeners.

        ``held``: the listeners earlier reloads dropped that the master still
        holds (``Dropped``); an address listed again takes its socket back.
        ``closed``: the inherited descriptors (``fd://N``) the master closed,
        refused as numbers that no longer name the socket they did.

        With --preload it also says that the code is kept.  Without a file to
        read again, the options stay; the TLS files are read again (a renewed
        certificate) all the same.

        A ``ConfigError`` (the files, an option, an address that cannot be
        bound, the pid file, the access log, the logging section) leaves
        everything as it was: what was opened here is closed again, and the
        environment (``env``, changed for the new workers) is put back.
        """
        if self._reread is None:  # no file: the options stay
            if self.config.certfile is not None:
                self.config = dataclasses.replace(self.config)  # the TLS files read again
            if self.config.preload:
                note_reload()
            return self.config, self.listeners
        again = self._reread()
        new, _ = activated(again.config, self._passed, bind_given=False)
        check_reload(self.config, new, again.source)
        try:
            check_access_log(new)
            check_statsd(new)  # the new workers' (the master's gauge keeps its start's)
            listeners, opened = keep_or_open(self.config, new, self.listeners, closed, held)
        except ConfigError as exc:
            raise ConfigError(f"{again.source}: {exc}") from None
        pid_file = self._pid_file
        serving = self._settled.env
        try:
            if new.pid != self.config.pid:
                try:
                    pid_file = PidFile.create(new.pid) if new.pid is not None else None
                except ConfigError as exc:
                    raise ConfigError(f"{again.source}: {exc}") from None
            # As at start, the environment before the logging (an ini's args may read it).
            self._settled.change_env(new.env)
            again.apply_logging()  # its errors name the file already
        except BaseException:
            self._settled.change_env(serving)  # the old workers' respawns get the old environment
            unopen(opened)
            if pid_file is not None and pid_file is not self._pid_file:
                pid_file.remove()
            raise
        # Committed: nothing below can fail the reload.
        if pid_file is not self._pid_file and self._pid_file is not None:
            self._pid_file.remove()  # the new one is written: never a moment without one
        self._pid_file = pid_file
        said = "; ".join(changes(self.config, new)) or "nothing changed"
        log.info("master: reload, %s read again: %s", again.source, said)
        if new.preload:
            note_reload(env_changed=dict(new.env) != dict(self.config.env))
        taken = [sock for _, sock in held]
        for sock, bind in zip(listeners, new.bind, strict=True):
            if among(sock, opened):
                log.info("listening on %s", describe_listener(sock, bind, new.tls_for(bind)))
            elif among(sock, taken):
                where = describe_listener(sock, bind, new.tls_for(bind))
                log.info("listening on %s again (the socket a reload dropped, kept)", where)
                retune(sock, bind, None, new)  # tuned for whichever config dropped it
            else:
                retune(sock, bind, self.config, new)
        self.config, self.listeners = new, listeners
        self._note_bound()
        return new, listeners

    def _restore(
        self,
        config: ServerConfig,
        listeners: list[socket.socket],
        given: list[tuple[Bind, socket.socket]],
    ) -> ServerConfig:
        """Back to the ``config`` and ``listeners`` the old workers run with: their reload failed.

        The listeners opened for it are closed (an inherited one let go of);
        those it took back from the held ones are ``given`` back (``Dropped``)
        and stay open, for the workers still holding them; the kept ones get
        their backlog and socket mode back, the env and the pid file are the
        old ones.  The logging it applied stays (``Reread``).
        Returns ``config`` as it now is: a pid file that cannot move back stays
        where the reload put it, and is named there (the master's config too).
        """
        held = [sock for _, sock in given]
        unopen([sock for sock in self.listeners if not among(sock, (*listeners, *held))])
        for sock, bind in zip(listeners, config.bind, strict=True):
            retune(sock, bind, self.config, config)
        self._settled.change_env(config.env)
        if config.pid != self.config.pid:
            try:
                pid_file = PidFile.create(config.pid) if config.pid is not None else None
            except ConfigError as exc:
                # Where it is now, rather than nowhere; the next reload starts from here.
                log.warning("master: the pid file stays where the reload moved it: %s", exc)
                config = dataclasses.replace(config, pid=self.config.pid)
            else:
                if self._pid_file is not None:
                    self._pid_file.remove()
                self._pid_file = pid_file
        said = "; ".join(changes(self.config, config))
        self.config, self.listeners = config, listeners
        self._note_bound()
        if said:
            log.info("master: the old workers' configuration is back: %s", said)
        return config

    def stop(self, graceful: bool = True) -> None:
        """Ask an in-process server to stop (thread-safe); its listeners close as it begins."""
        worker = self._worker
        if worker is not None:
            worker.stop(graceful)

    def _claim(self, method: str) -> None:
        """Refuse a second start: it would serve the same sockets with a second worker.

        The first one's threads would be left running, unseen by ``close()``,
        and keep the process from exiting.
        """
        if self._started:
            raise RuntimeError(
                f"Server.{method}(): this server was already started; close() it"
                " (a stop() alone does not end it) before starting it again"
            )
        self._started = True

    def start(self) -> Server:
        """Serve in a background thread of this process; returns when ready.

        This is one in-process worker, so an explicit ``workers`` >= 1 is an error.
        """
        if self.config.workers and self._workers_given:
            raise ConfigError("workers: an in-process server (start/with) needs workers=0")
        self.config.check_in_process()
        if self.config.account() is not None:
            raise ConfigError(
                "user: a server in a thread (start/with) would switch its caller's whole"
                " process to the user; use serve_forever() or wsgistack serve"
            )
        self._claim("start")
        try:
            self.bind()
            if self.config.pid is not None:
                self._pid_file = PidFile.create(self.config.pid)
            self._worker = Worker(self.loader(), self.config, self.listeners)
        except BaseException:
            self.close()  # no listener left open (nor its unix socket file) by a failed start
            raise
        self._thread = threading.Thread(target=self._worker.run, name="wsgistack-server")
        self._thread.start()
        self._worker.ready.wait(10.0)
        return self

    def close(self) -> None:
        """Stop a background server gracefully, then close (and unlink) the sockets."""
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            self.stop(graceful=True)
            thread.join(timeout=self.config.graceful_timeout + 5.0)
        close_listeners(self.listeners)
        self.listeners = []
        pid_file, self._pid_file = self._pid_file, None
        if pid_file is not None:
            pid_file.remove()
        self._started = False  # closed: start() may bind afresh

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def serve(app: Callable[..., Any], **options: Any) -> int:
    """Serve ``app`` until stopped (see ``Server`` for the options)."""
    return Server(app, **options).serve_forever()
