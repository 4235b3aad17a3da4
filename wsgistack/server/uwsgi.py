"""The uwsgi wire protocol (nginx's ``uwsgi_pass``), sans-IO, beside the HTTP parser.

A packet is a 4-byte header (modifier1, a little-endian 16-bit size,
modifier2) and then that many bytes of variables, each a little-endian
16-bit length and bytes for the key, then the same for the value.  The
request body follows, ``CONTENT_LENGTH`` bytes of it.  The variables are the
WSGI environ as nginx computed it (``uwsgi_params`` plus ``HTTP_*``), so
there is no HTTP to re-parse; the response is plain HTTP/1.x, ended by
closing the connection (nginx sends one request per uwsgi connection).

    parser = UwsgiParser(limits)
    parser.feed(packet)
    request = parser.next_request()   # request.vars: the variables, decoded latin-1

``UwsgiParser`` has the interface of ``http.RequestParser``, so the
connection and worker serve both.  Refusals are ``ProtocolError``s.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import ProtocolError
from ..options import TCHAR, TOKEN
from .environ import Input
from .request import LENGTH_DIGITS, Limits, Request, RequestQueue, body_too_large
from .requestline import line_too_long

__all__ = ["UwsgiParser", "UwsgiRequest", "build_uwsgi_environ"]

log = logging.getLogger("wsgistack.server")

#: Names are tokens, as header names are: nginx makes HTTP_X_A!B of a header
#: X-A!B when ``ignore_invalid_headers off`` lets one through (the HTTP bind takes it).
_NAMES = re.compile(rf"{TCHAR}+(?:\n{TCHAR}+)*\Z")
#: Names that passed ``_NAMES``: nginx sends the same few dozen on every packet.
_CHECKED_NAMES: set[str] = set()
_CHECKED_NAMES_MAX = 1024
#: PEP 3333 names these without HTTP_; nginx sends the headers under both names.
#: And a uwsgi body is always CONTENT_LENGTH bytes: nginx has taken a chunked
#: one apart, yet passes the client's Transfer-Encoding on, which would tell
#: the app of a chunked body (werkzeug then gives no content length).
_SHADOWED = frozenset(("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING"))
#: What an environ holds when nginx's variables leave it out.  A peer on a
#: unix socket has no address of its own (as for HTTP there): not 127.0.0.1,
#: which an allow list or a trusted proxy list may well hold.
_DEFAULTS = {
    "SERVER_PROTOCOL": "HTTP/1.0",
    "QUERY_STRING": "",
    "PATH_INFO": "",
    "REMOTE_ADDR": "",
    "REMOTE_PORT": "0",
}
_HTTP_METHODS = (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN")
#: uWSGI's modifier1 30 asks for SCRIPT_NAME to be taken off PATH_INFO, which
#: we always do; Flask's and uWSGI's nginx examples pair it with SCRIPT_NAME.
_MODIFIER1_SCRIPT_NAME = 30
#: Room for nginx's params (uwsgi_params is about 500 bytes) and for the
#: "HTTP_" and sizes each header gains over its HTTP line.
_PARAMS_ROOM = 4096
#: The variables that hold the parts of the request line nginx read, in order.
_REQUEST_LINE = ("REQUEST_METHOD", "REQUEST_URI", "SERVER_PROTOCOL")
#: Methods a REQUEST_METHOD is nearly always: taken without the token check.
_COMMON_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"))
#: Variables that hold a certificate, PEM (mod_ssl's SSL_CLIENT_CERT and
#: SSL_CLIENT_CERT_CHAIN_n): their lines end in LF.
_PEM_PREFIX = "SSL_CLIENT_CERT"


class UwsgiRequest(Request):
    """A request whose head arrived as uwsgi variables rather than HTTP lines."""

    __slots__ = ("vars",)

    def __init__(self, variables: dict[str, str]) -> None:
        super().__init__()
        self.vars = variables
        self.method = variables["REQUEST_METHOD"]
        self.url = variables.get("REQUEST_URI", "").encode("latin-1")
        self.version = "1.0"  # no chunking, no keep-alive: the close ends the response
        self.keep_alive = False


def parse_vars(block: bytes) -> dict[str, str]:
    """Decode a variable block; a repeated header is joined, another repeat overridden.

    The names and values are checked once over all of them, after decoding.
    A key sent twice is rare (a param overridden, or a header repeated), so it
    is noticed by the count of pairs, and the block is read again.
    """
    try:
        variables, pairs = decode_vars(block)
    except ValueError as exc:
        raise ProtocolError(f"uwsgi: {exc}", 400) from None
    if pairs != len(variables):
        variables = _joined(block, block.decode("latin-1"))
    if not _CHECKED_NAMES.issuperset(variables):
        _check_names(variables)
    values = "".join(variables.values())
    if "\r" in values or "\n" in values or "\x00" in values:
        _check_values(variables)
    return variables


def decode_vars_python(block: bytes) -> tuple[dict[str, str], int]:
    """The variables of ``block`` as latin-1 strs, and how many pairs it held.

    A repeated key counts twice, its last value kept.  ValueError says which
    size runs past the block.  ``_uwsgi_vars.decode_vars`` does the same in C;
    this is used where it was not built.  The loop is kept to the fewest steps:
    sizes are read with ``+`` (which CPython 3.11 specialises for ints, where
    ``|`` is generic) and strings sliced from one decode of the whole block.
    """
    text = block.decode("latin-1")
    variables: dict[str, str] = {}
    end = len(block)
    at = pairs = 0
    try:
        while at < end:
            key_end = at + 2 + block[at] + (block[at + 1] << 8)
            # Indexing fails here if the key ran past the end of the block.
            value_end = key_end + 2 + block[key_end] + (block[key_end + 1] << 8)
            variables[text[at + 2 : key_end]] = text[key_end + 2 : value_end]
            at = value_end
            pairs += 1
    except IndexError:
        raise ValueError("a variable's size runs past the packet") from None
    if at != end:
        raise ValueError("the last value runs past the packet")
    return variables, pairs


try:
    from ._uwsgi_vars import decode_vars
except ImportError:  # not compiled (no C compiler at install): the same in Python
    decode_vars = decode_vars_python


def _check_values(variables: dict[str, str]) -> None:
    """Refuse CR, LF or NUL in a value, except in PATH_INFO, and LF in a PEM.

    No header value can hold them (nginx refuses such requests), so they mean
    a peer that is not nginx, forging headers.  PATH_INFO is the decoded path:
    nginx sends ``/a%0Ab`` as ``/a\nb``, and the app gets it as over HTTP.
    And a client certificate nginx passes as mod_ssl names it
    (``uwsgi_param SSL_CLIENT_CERT $ssl_client_raw_cert``) is a PEM, in lines.
    """
    for key, value in variables.items():
        if ("\r" in value or "\n" in value or "\x00" in value) and key != "PATH_INFO":
            if key.startswith(_PEM_PREFIX) and "\r" not in value and "\x00" not in value:
                continue  # (looked at only here: the common path tests what it did)
            raise ProtocolError(f"uwsgi: a control character in {key}", 400)


def _joined(block: bytes, text: str) -> dict[str, str]:
    """The variables of a well-formed block, a repeated header's values joined.

    nginx before 1.23 sends a repeated request header once per line, so those
    are joined.  Any other repeat is a ``uwsgi_param`` written after ``include
    uwsgi_params`` (``REMOTE_ADDR $http_x_real_ip``, ``HTTP_HOST $http_host``):
    nginx sends both, and the last, the one configured, wins, as in uWSGI.
    A client cannot repeat Host (nginx refuses that), so HTTP_HOST is a param.
    """
    variables: dict[str, str] = {}
    at = 0
    while at < len(block):
        key_end = at + 2 + block[at] + (block[at + 1] << 8)
        value_end = key_end + 2 + block[key_end] + (block[key_end + 1] << 8)
        key, value = text[at + 2 : key_end], text[key_end + 2 : value_end]
        if key in variables and key.startswith("HTTP_") and key != "HTTP_HOST":
            value = variables[key] + ("; " if key == "HTTP_COOKIE" else ", ") + value
        variables[key] = value
        at = value_end
    return variables


def _check_names(variables: dict[str, str]) -> None:
    """Refuse a variable name that is not a token; remember the good ones."""
    if not variables:
        return
    joined = "\n".join(variables)
    # The count catches a name that itself holds "\n" (two tokens would pass as one list).
    if joined.count("\n") != len(variables) - 1 or not _NAMES.match(joined):
        bad = next(key for key in variables if "\n" in key or not _NAMES.match(key))
        raise ProtocolError(f"uwsgi: invalid variable name {bad[:40]!r}", 400)
    if len(_CHECKED_NAMES) < _CHECKED_NAMES_MAX:
        _CHECKED_NAMES.update(variables)


def _refuse_modifiers(header: bytes) -> None:
    """Say why a packet header with a non-zero modifier is refused (30 is accepted)."""
    if header[0] == _MODIFIER1_SCRIPT_NAME and not header[3]:
        return
    if header[:4] in _HTTP_METHODS:
        raise ProtocolError("uwsgi: this looks like HTTP sent to a uwsgi bind", 400)
    if header[0]:
        raise ProtocolError(f"uwsgi: unsupported modifier1 {header[0]} (0 is WSGI)", 400)
    raise ProtocolError(f"uwsgi: unsupported modifier2 {header[3]}", 400)


class UwsgiParser(RequestQueue):
    """Feed bytes; take the one request of the connection (``RequestParser``'s interface)."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits
        # A head the HTTP bind takes must fit: the target travels twice
        # (REQUEST_URI, then PATH_INFO and QUERY_STRING), each header grows by
        # "HTTP_" and its sizes, and nginx adds its own params.
        self._packet_limit = 2 * limits.max_request_line + limits.max_header_size + _PARAMS_ROOM
        # A packet no larger than this cannot break a limit of the head: a variable
        # takes 4 bytes more than its HTTP line, and a header at least 9 (HTTP_ and
        # the two sizes), so only a larger one is counted field by field.
        self._within_limits = min(
            limits.max_request_line, limits.max_header_size, 9 * (limits.max_headers + 1) - 1
        )
        self._buffer = b""
        self._current: UwsgiRequest | None = None
        self._done = False
        #: The packet's variables once parsed, refused or not (see ``refused_line``).
        self.variables: dict[str, str] | None = None

    def feed(self, data: bytes) -> None:
        """Parse ``data``; a protocol error is recorded in ``self.error`` (never raised)."""
        if self.error is not None or self._done:
            return  # after the one request, nginx sends nothing more; ignore strays
        request = self._current
        if request is None:
            self._buffer = self._buffer + data if self._buffer else data
            try:
                self._head()
            except ProtocolError as exc:
                self.error = exc
                if not exc.over_limit:  # nginx never sends such a packet: its setup is wrong
                    log.warning("refused a uwsgi packet: %s", exc)
            return
        self._body(request, data)

    @property
    def mid_request(self) -> bool:
        """True while part of a packet header has arrived (for the 408 decision)."""
        return self._current is None and bool(self._buffer)

    def _head(self) -> None:
        buffer = self._buffer
        if len(buffer) < 4:
            return
        if buffer[0] or buffer[3]:
            _refuse_modifiers(buffer)
        size = buffer[1] + (buffer[2] << 8)
        limit = self._packet_limit
        if size > limit:
            raise ProtocolError(f"uwsgi: a {size}-byte packet is over the {limit}-byte limit", 431)
        if len(buffer) < 4 + size:
            return
        variables = self.variables = parse_vars(buffer[4 : 4 + size])
        rest = buffer[4 + size :]
        self._buffer = b""
        method = variables.get("REQUEST_METHOD")
        if not method:
            raise ProtocolError("uwsgi: the packet has no REQUEST_METHOD", 400)
        if method not in _COMMON_METHODS and not TOKEN.match(method):
            # The HTTP bind's parser never lets such a method through; nginx never
            # sends one, so only a peer forging packets could, and the app is spared.
            raise ProtocolError(f"uwsgi: REQUEST_METHOD {method[:40]!r} is not a method", 400)
        if size > self._within_limits:
            self._check_limits(variables)
        length_text = variables.get("CONTENT_LENGTH")
        if length_text:
            if not (length_text.isascii() and length_text.isdigit()):
                raise ProtocolError(f"uwsgi: invalid CONTENT_LENGTH {length_text[:40]!r}", 400)
            # nginx passes a client's Content-Length as sent, leading zeros and
            # all, and int() refuses a string of over 4300 digits with ValueError.
            digits = length_text.lstrip("0") or "0"
            length = int(digits) if len(digits) <= LENGTH_DIGITS else None
            if length is None or length > self.limits.max_body_size:
                raise ProtocolError(body_too_large(self.limits.max_body_size, digits), 413)
            variables["CONTENT_LENGTH"] = digits  # the app sees a plain number
        else:
            length = 0
        request = UwsgiRequest(variables)
        request.content_length = length
        self._current = request
        self._queue(request)
        if length == 0:
            self._complete(request)
        elif rest:
            self._body(request, rest)

    def _check_limits(self, variables: dict[str, str]) -> None:
        """Refuse a head over the limits the HTTP bind applies, with its statuses.

        The packet's own limit only bounds them together: a target of 600 bytes
        passed --max-request-line 256, and 20 headers --max-headers 5.  The
        request line is its three variables and the two spaces between them.  Header
        fields are the ``HTTP_*`` variables (a repeated one, joined, counts once),
        each sized as its HTTP line (``Name: value`` and CRLF).
        """
        limits = self.limits
        # The request line nginx read, as the HTTP bind counts it: method SP target SP version.
        line = sum(len(variables.get(name, "")) + 1 for name in _REQUEST_LINE) - 1
        if line > limits.max_request_line:
            raise ProtocolError(line_too_long(limits.max_request_line), 414)
        fields = size = 0
        for name, value in variables.items():
            if name.startswith("HTTP_"):
                fields += 1
                size += len(name) + len(value) - 1  # less "HTTP_", plus ": " and CRLF
        if fields > limits.max_headers:
            raise ProtocolError(
                f"uwsgi: {fields} header fields are over the limit of {limits.max_headers}", 431
            )
        if size > limits.max_header_size:
            raise ProtocolError(
                f"uwsgi: {size} bytes of header fields are over the "
                f"{limits.max_header_size}-byte limit",
                431,
            )

    @property
    def refusing_head(self) -> bool:
        variables = self.variables
        return variables is not None and variables.get("REQUEST_METHOD") == "HEAD"

    def refused_line(self, peer: Any, request: Request | None = None) -> tuple[Any, str]:
        """The client and request line to log for a refusal (413, say).

        Once the variables are parsed, they name the client nginx served and
        its request, where the peer is only nginx itself (a packet is one
        request: ``request``, when given, is that one).
        """
        variables = self.variables
        if not variables or not variables.get("REQUEST_METHOD"):
            return peer, ""
        client = (variables.get("REMOTE_ADDR", ""), variables.get("REMOTE_PORT", ""))
        line = " ".join(
            variables.get(key, "") for key in ("REQUEST_METHOD", "REQUEST_URI", "SERVER_PROTOCOL")
        )
        return client, line

    def _body(self, request: UwsgiRequest, data: bytes) -> None:
        wanted = request.content_length - request.body_size  # type: ignore[operator]
        if len(data) > wanted:
            data = data[:wanted]  # bytes past the body are not ours
        if data:
            request.body.append(data)
            request.body_size += len(data)
        if request.body_size == request.content_length:
            self._complete(request)

    def _complete(self, request: UwsgiRequest) -> None:
        request.complete = True
        self._current = None
        self._done = True


def build_uwsgi_environ(
    base: dict[str, Any], request: Request, peer: Any, wsgi_input: Input
) -> dict[str, Any]:
    """The environ from nginx's variables over the listener's defaults.

    ``SCRIPT_NAME`` (sent, or ``--root-path``) is taken off the front of
    ``PATH_INFO``, which nginx sends whole; ``UWSGI_SCHEME`` (http or https),
    else ``HTTPS``/``REQUEST_SCHEME``, sets ``wsgi.url_scheme``.
    """
    variables: dict[str, str] = request.vars  # type: ignore[attr-defined]
    environ = base.copy()
    environ.update(_DEFAULTS)
    if isinstance(peer, tuple):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = peer[0], str(peer[1])
    environ.update(variables)
    for key in _SHADOWED:
        if key in environ:
            del environ[key]
    for key in ("CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_HOST"):
        if key in environ and not environ[key]:
            # nginx sends them empty; PEP 3333 wants them absent.  HTTP_HOST is
            # Debian's $host, empty for a request without Host to a server block
            # without server_name: absent, as over HTTP, so URLs use SERVER_NAME.
            del environ[key]
    for key in ("SERVER_NAME", "SERVER_PORT"):
        if not environ[key]:
            # $server_name of a server block without server_name: Django's
            # get_host() and wsgiref's request_uri() built "http://:80/" of it.
            environ[key] = base[key]  # the listener's, as over HTTP
    script_name = environ["SCRIPT_NAME"]
    if script_name:
        path_info = environ["PATH_INFO"]
        if path_info == script_name or path_info.startswith(script_name + "/"):
            environ["PATH_INFO"] = path_info[len(script_name) :]
    scheme = variables.get("UWSGI_SCHEME")  # uWSGI's override wins when not empty, as there
    if scheme:
        if scheme.lower() in ("http", "https"):
            environ["wsgi.url_scheme"] = scheme.lower()
    elif (
        variables.get("HTTPS", "").lower() in ("on", "1")
        or variables.get("REQUEST_SCHEME") == "https"
    ):
        environ["wsgi.url_scheme"] = "https"
    environ["RAW_URI"] = variables.get("REQUEST_URI", "")
    environ["wsgi.input"] = wsgi_input
    return environ
