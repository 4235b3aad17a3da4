"""A PasteDeploy ini served by our CLI: ``wsgistack serve --paste site.ini``, as gunicorn's.

Rules: the master only reads the file (its sections, ``[server:main]``'s
options, its logging); it imports none of the app, so each worker's
``loadapp`` is a fresh load and SIGHUP reloads the code.  An app section
other than ``main`` is named after a ``#`` (``site.ini#admin``), as gunicorn's
``--paste`` and pserve's config URIs name it.

    ini = read_paste_ini("site.ini#admin", working_directory())
    options = ini.server_options({"workers": "2"})    # [server:main]'s, flags winning
    app = ini.load_app()                              # in each worker
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ._types import WSGIApplication
from .errors import ConfigError, unreadable
from .loader import raised
from .paste import ini_server_options, server_factory
from .server.logsetup import apply_ini

__all__ = ["PasteIni", "read_paste_ini"]

#: The sections PasteDeploy takes as an app named NAME (loadwsgi's APP prefixes).
_APP_SECTIONS = ("app", "pipeline", "composite", "filter-app")


@dataclasses.dataclass(frozen=True)
class PasteIni:
    """What the master knows of an ini: where it is, which app, ``[server:main]``'s options.

    ``given`` is the file as the user named it, for messages; ``path`` the
    absolute one the workers load.  ``server`` holds ``[server:main]``'s
    options when it uses our server (``egg:wsgistack#main``), else None;
    ``ignored`` then names the other server's ``use``, if there is one.
    """

    given: str
    path: str
    name: str
    server: Mapping[str, str] | None
    ignored: str | None
    has_loggers: bool

    def server_options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """``[server:main]``'s options (if ours), checked, with ``overrides`` (flags) winning."""
        where = f"{self.given}: [server:main]"
        return ini_server_options(self.server or {}, where, overrides)

    def load_app(self) -> WSGIApplication:
        """``paste.deploy.loadapp`` of the named app, as gunicorn's ``--paste`` loads it."""
        from paste.deploy import loadapp

        app: WSGIApplication = loadapp(f"config:{self.path}", name=self.name)
        return app

    def configure_logging(self) -> None:
        """Apply the file's ``[loggers]`` with ``fileConfig``, as pserve and gunicorn do.

        A PasteDeploy app's log levels and handlers are written there; left
        unread, they would silently stop applying when the file moves from
        pserve or gunicorn to us.  Loggers that exist are kept (our own, the
        app's), and ``%(here)s`` is the file's directory, as PasteDeploy has it.
        """
        if not self.has_loggers:
            return
        defaults = {"here": os.path.dirname(self.path), "__file__": self.path}
        apply_ini(self.path, f"{self.given}: [loggers]", defaults)  # kept as it was on failure


def read_paste_ini(spec: str, workdir: str) -> PasteIni:
    """Read ``FILE`` or ``FILE#NAME`` (relative to ``workdir``) without loading any app.

    A missing or unreadable file, an ini that does not parse, an app section
    that is not there and a bad ``[server:main]`` of ours fail here, with one
    line, before anything binds.
    """
    try:
        from paste.deploy import loadwsgi
    except ImportError:
        raise ConfigError("--paste needs PasteDeploy: pip install pastedeploy") from None
    given, _, name = spec.partition("#")
    if "#" in spec and not name:
        raise ConfigError(f"{spec}: no app name after '#' (site.ini#NAME; without '#': main)")
    if not given:
        raise ConfigError(f"{spec}: no ini file before '#' (site.ini#NAME)")
    path = os.path.join(workdir, given)
    try:
        loader = loadwsgi.ConfigLoader(path)
    except OSError as exc:  # missing, a directory, no permission, ...
        raise unreadable(given, exc) from None
    except configparser.Error as exc:
        raise ConfigError(f"{given}: not a valid ini file: {' '.join(str(exc).split())}") from None
    name = name or "main"
    try:
        loader.find_config_section(loadwsgi.APP, name)
    except LookupError:
        *first, last = (f"[{kind}:{name}]" for kind in _APP_SECTIONS)
        sections = f"{', '.join(first)} or {last}"
        raise ConfigError(f"{given}: no app named {name!r} (no {sections} section)") from None
    server, ignored = _server_section(loader, given)
    return PasteIni(given, path, name, server, ignored, loader.parser.has_section("loggers"))


def _server_section(loader: Any, given: str) -> tuple[dict[str, str] | None, str | None]:
    """``[server:main]``'s options if it uses our server; else None and its ``use``.

    Another server's section (waitress's, gunicorn's) is ignored, as gunicorn's
    ``--paste`` ignores it, also when that server is not installed here; a
    ``use`` naming wsgistack that does not resolve is a mistake to report.
    """
    from paste.deploy import loadwsgi

    try:
        section = loader.find_config_section(loadwsgi.SERVER, "main")
    except LookupError:
        return None, None
    use = loader.parser.get(section, "use", fallback="").strip()
    try:
        context = loader.get_context(loadwsgi.SERVER, "main")
    except Exception as exc:
        if "wsgistack" in use.lower():
            raise ConfigError(f"{given}: [{section}]: use = {use}: {raised(exc)}") from None
        return None, use or f"[{section}]"
    if context.object is not server_factory:
        return None, use or f"[{section}]"
    return dict(context.local_conf), None
