"""A real Django project through the whole stack, over real sockets, as its users rely on it.

The stack is the one the README tours: ``ErrorCatcher``, ``IPFilter`` trusting
the proxy in front, ``RateLimiter`` and a ``PrefixDispatcher`` mounting the
project under ``/site``, served by the reference server on port 0.  Some
checks run the same project again as a ``LoadBalancer``'s upstream.
Django's settings are one per process (``tests.djangoapp``): each test
changes what it needs with ``override_settings``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from wsgiref.validate import validator

import pytest
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.middleware.csrf import get_token
from django.test import override_settings
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt

import tests.djangoapp  # noqa: F401  (configures Django's settings)
from tests.server.live import RawClient, live_server
from wsgistack import compose, use
from wsgistack.middlewares import (
    ErrorCatcher,
    IPFilter,
    LoadBalancer,
    PrefixDispatcher,
    RateLimiter,
    RequestBuffering,
)

HOST = "127.0.0.1"
MULTIPART = "multipart/form-data; boundary=B"
released = threading.Event()  # the streaming view's second part waits for it
closed: list[str] = []  # what the streaming responses' close() recorded


closing = threading.Event()  # set by the streaming response's close()


class RecordedStream(StreamingHttpResponse):
    def close(self) -> None:
        closed.append("stream")
        closing.set()
        super().close()


def where(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "reverse": reverse("where"),
            "absolute": request.build_absolute_uri(),
            "secure": request.is_secure(),
        }
    )


def download(request: HttpRequest) -> HttpResponse:
    return FileResponse(open(request.GET["file"], "rb"))  # Django closes it


@csrf_exempt
def export(request: HttpRequest) -> HttpResponse:
    """A form post answered with a file (an export): the body read, then a file sent."""
    name = f"{len(request.body)}.bin"
    return FileResponse(open(request.GET["file"], "rb"), filename=name)


def stream(request: HttpRequest) -> HttpResponse:
    def parts() -> Iterator[bytes]:
        yield b"first\n"
        released.wait(10)
        yield b"second\n"

    return RecordedStream(parts(), content_type="text/plain")


def tagged(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(b"tagged body", content_type="text/plain")
    response["ETag"] = '"v1"'
    return response


def cookies(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    response = HttpResponse(str(request.session["visits"]), content_type="text/plain")
    response.set_cookie("theme", "dark")
    response.set_cookie("lang", "fr")
    return response


def form(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return HttpResponse(f"posted {request.POST['v']}", content_type="text/plain")
    return HttpResponse(get_token(request), content_type="text/plain")


@csrf_exempt
def upload(request: HttpRequest) -> HttpResponse:
    sent = request.FILES.get("f")
    return JsonResponse({"size": None if sent is None else sent.size})


def boom(request: HttpRequest) -> HttpResponse:
    raise ValueError("the view failed")


urlpatterns = [
    path("where/", where, name="where"),
    path("download/", download),
    path("export/", export),
    path("stream/", stream),
    path("tagged/", tagged),
    path("cookies/", cookies),
    path("form/", form),
    path("upload/", upload),
    path("boom/", boom),
]

SETTINGS = {
    "ROOT_URLCONF": sys.modules[__name__],
    "ALLOWED_HOSTS": [HOST, "site.example"],
    "MIDDLEWARE": [
        "django.middleware.http.ConditionalGetMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    "SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
    "USE_X_FORWARDED_HOST": True,
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "DATA_UPLOAD_MAX_MEMORY_SIZE": 10_000,
}


@pytest.fixture(scope="module")
def django_app():
    with override_settings(**SETTINGS):
        yield get_wsgi_application()


def stack(app, *, hooks=(), inner=validator):
    return compose(
        use(ErrorCatcher, on_error=list(hooks)),
        use(IPFilter, deny=["192.0.2.0/24"], trusted_proxies=[HOST]),
        use(RateLimiter, "100000/minute"),
        PrefixDispatcher({"/site": inner(app)}),
    )


@pytest.fixture(scope="module")
def site(django_app):
    """The stack over the reference server, apps inside the validator on both sides."""
    with live_server(stack(django_app)) as server:
        yield server.address


def fetch(address, method, target, body=None, headers=None):
    conn = http.client.HTTPConnection(*address, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def multipart(size: int) -> bytes:
    return (
        b'--B\r\nContent-Disposition: form-data; name="f"; filename="f.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + b"u" * size + b"\r\n--B--\r\n"
    )


def errors_logged(caplog):
    return [r for r in caplog.records if r.name == "wsgistack.errors"]


# -- URLs, hosts and schemes ------------------------------------------------------------


def test_reverse_and_absolute_urls_carry_the_mount(site):
    status, _, body = fetch(site, "GET", "/site/where/", headers={"Host": HOST})
    assert status == 200
    assert json.loads(body) == {
        "reverse": "/site/where/",
        "absolute": f"http://{HOST}/site/where/",
        "secure": False,
    }


def test_behind_a_trusted_proxy_django_builds_its_public_urls(site):
    proxy = {"Host": HOST, "X-Forwarded-Host": "site.example", "X-Forwarded-Proto": "https"}
    status, _, body = fetch(site, "GET", "/site/where/", headers=proxy)
    assert status == 200
    assert json.loads(body) == {
        "reverse": "/site/where/",
        "absolute": "https://site.example/site/where/",
        "secure": True,
    }


def test_a_host_outside_allowed_hosts_is_a_400_not_an_error(site, caplog):
    status, headers, _ = fetch(site, "GET", "/site/where/", headers={"Host": "evil.example"})
    assert status == 400
    assert "X-Error-Id" not in headers
    assert errors_logged(caplog) == []


def test_djangos_append_slash_redirect_stays_under_the_mount(site):
    status, headers, _ = fetch(site, "GET", "/site/where?x=1", headers={"Host": HOST})
    assert (status, headers["Location"]) == (301, "/site/where/?x=1")


# -- responses: files, streams, HEAD, 304 ----------------------------------------------


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "report.bin"
    path.write_bytes(os.urandom(300_000))
    return path


def test_a_file_response_is_sendfiled_through_every_layer(django_app, big_file, sendfile_spy):
    # The validator hides wsgi.file_wrapper, so it stays out of this one.
    with live_server(stack(django_app, inner=lambda app: app), validate=False) as server:
        status, headers, body = fetch(server.address, "GET", f"/site/download/?file={big_file}")
        assert (status, headers["Content-Length"], body) == (200, "300000", big_file.read_bytes())
        status, headers, body = fetch(server.address, "HEAD", f"/site/download/?file={big_file}")
        assert (status, headers["Content-Length"], body) == (200, "300000", b"")
    assert sum(sendfile_spy) == 300_000  # counted once the server stopped: its sends are done


def test_a_file_answering_a_buffered_chunked_post_is_still_sendfiled(
    django_app, big_file, sendfile_spy
):
    app = stack(RequestBuffering(django_app), inner=lambda app: app)
    with live_server(app, validate=False) as server:
        status, _, body = fetch(
            server.address, "POST", f"/site/export/?file={big_file}", body=iter([b"a" * 5000])
        )
    assert (status, body) == (200, big_file.read_bytes())
    assert sum(sendfile_spy) == 300_000


@pytest.mark.parametrize("through", ["stack", "forwarder"])
def test_a_streaming_response_streams_and_is_closed_once(site, pool, through):
    address, target = (site, "/site/stream/") if through == "stack" else (pool, "/pool/stream/")
    released.clear()
    closed.clear()
    closing.clear()
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert response.readline() == b"first\n"  # before the view may go on
        released.set()
        assert response.read() == b"second\n"
    finally:
        conn.close()
    assert closing.wait(10)  # the server closes it once the last chunk went out
    assert closed == ["stream"]


def test_head_and_a_304_from_conditional_get(site):
    status, headers, body = fetch(site, "HEAD", "/site/tagged/")
    assert (status, headers["Content-Length"], headers["ETag"], body) == (200, "11", '"v1"', b"")
    status, headers, body = fetch(site, "GET", "/site/tagged/", headers={"If-None-Match": '"v1"'})
    assert (status, headers["ETag"], body) == (304, '"v1"', b"")


# -- uploads ---------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_20_mb_upload_reaches_request_files(django_app, framing):
    body = multipart(20 * 1024 * 1024)
    app = stack(RequestBuffering(django_app) if framing == "chunked" else django_app)
    sent = (
        body
        if framing == "content-length"
        else iter([body[i : i + 2**20] for i in range(0, len(body), 2**20)])
    )
    with live_server(app, max_body_size=32 * 1024 * 1024) as server:
        status, _, answer = fetch(
            server.address, "POST", "/site/upload/", body=sent, headers={"Content-Type": MULTIPART}
        )
    assert (status, json.loads(answer)) == (200, {"size": 20 * 1024 * 1024})


@pytest.mark.parametrize("through", ["stack", "forwarder"])
def test_a_form_over_data_upload_max_memory_size_is_a_400(site, pool, caplog, through):
    caplog.set_level(logging.CRITICAL, logger="django.security")
    address, target = (site, "/site/upload/") if through == "stack" else (pool, "/pool/upload/")
    form_body = b"a=1&" * 5000  # 20 000 bytes, over the 10 000 allowed
    status, headers, _ = fetch(
        address,
        "POST",
        target,
        body=form_body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 400  # Django's own answer, passed on by every layer
    assert "X-Error-Id" not in headers
    assert errors_logged(caplog) == []


@pytest.mark.parametrize(
    ("stall", "expected"), [(False, 400), (True, 408)], ids=["leaves", "stalls"]
)
@pytest.mark.parametrize("catcher", [True, False], ids=["error-catcher", "server-alone"])
def test_a_client_that_stops_mid_upload_is_the_clients_fault(
    django_app, caplog, stall, expected, catcher
):
    # With DEBUG_PROPAGATE_EXCEPTIONS Django raises UnreadablePostError (from the
    # server's RequestBodyError): the client hears why, nobody is paged for it.
    hooked = []
    app = (
        stack(django_app, hooks=[lambda *args: hooked.append(args)])
        if catcher
        else PrefixDispatcher({"/site": validator(django_app)})
    )
    body = multipart(1_000_000)
    head = (
        b"POST /site/upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with (
        override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True),
        live_server(app, timeout=0.5) as server,
        RawClient(server.address) as client,
    ):
        client.send(head + body[:100_000])
        if not stall:
            client.sock.shutdown(socket.SHUT_WR)
        status, headers, _ = client.response()
    assert (status, headers["connection"]) == (expected, "close")
    assert hooked == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- cookies, sessions, CSRF -----------------------------------------------------------


def set_cookies(headers) -> list[str]:
    return [value.split(";")[0] for value in headers.get_all("Set-Cookie")]


@pytest.fixture(scope="module")
def pool(site):
    """The same project as a LoadBalancer's upstream, behind a front stack of its own."""
    balancer = LoadBalancer([f"http://{site[0]}:{site[1]}/site"], request_buffering=True)
    front = compose(
        use(ErrorCatcher),
        use(RateLimiter, "100000/minute"),
        PrefixDispatcher({"/pool": balancer}),
    )
    with live_server(front) as server:
        yield server.address
    balancer.close()


@pytest.mark.parametrize("through", ["stack", "forwarder"])
def test_every_set_cookie_arrives(site, pool, through):
    address, target = (site, "/site/cookies/") if through == "stack" else (pool, "/pool/cookies/")
    status, headers, body = fetch(address, "GET", target)
    assert (status, body) == (200, b"1")
    names = [cookie.split("=")[0] for cookie in set_cookies(headers)]
    assert sorted(names) == ["lang", "sessionid", "theme"]
    assert headers.get_all("RateLimit")  # the limiters' fields joined them
    session = next(c for c in set_cookies(headers) if c.startswith("sessionid="))
    status, _, body = fetch(address, "GET", target, headers={"Cookie": session})
    assert (status, body) == (200, b"2")


@pytest.mark.parametrize("through", ["stack", "forwarder"])
def test_a_csrf_protected_post(site, pool, through):
    address, target = (site, "/site/form/") if through == "stack" else (pool, "/pool/form/")
    status, headers, token = fetch(address, "GET", target)
    cookie = next(c for c in set_cookies(headers) if c.startswith("csrftoken="))
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = fetch(
        address,
        "POST",
        target,
        body=b"v=1&csrfmiddlewaretoken=" + token,
        headers={**form_headers, "Cookie": cookie},
    )
    assert (status, body) == (200, b"posted 1")
    status, _, _ = fetch(address, "POST", target, body=b"v=1", headers=form_headers)
    assert status == 403


def test_through_the_forwarder_uploads_files_and_redirects(pool):
    body = multipart(3 * 1024 * 1024)
    chunks = iter([body[i : i + 2**20] for i in range(0, len(body), 2**20)])
    status, _, answer = fetch(
        pool, "POST", "/pool/upload/", body=chunks, headers={"Content-Type": MULTIPART}
    )
    assert (status, json.loads(answer)) == (200, {"size": 3 * 1024 * 1024})
    status, headers, _ = fetch(pool, "GET", "/pool/where")
    assert (status, headers["Location"]) == (301, "/pool/where/")


def test_behind_a_trusted_proxy_and_the_forwarder_django_knows_its_public_host(site):
    # TLS ends at a balancer the forwarder trusts: Django (USE_X_FORWARDED_HOST,
    # SECURE_PROXY_SSL_HEADER) must still read one host, or every request is a 400.
    balancer = LoadBalancer([f"http://{site[0]}:{site[1]}/site"], trusted_proxies=[HOST])
    proxy = {
        "Host": "site.example",
        "X-Forwarded-Host": "site.example",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "198.51.100.7",
    }
    try:
        with live_server(PrefixDispatcher({"/pool": balancer})) as server:
            status, _, body = fetch(server.address, "GET", "/pool/where/", headers=proxy)
            # A CSRF-protected POST over https: Django checks Origin against its host.
            _, headers, token = fetch(server.address, "GET", "/pool/form/", headers=proxy)
            cookie = next(c for c in set_cookies(headers) if c.startswith("csrftoken="))
            posted = fetch(
                server.address,
                "POST",
                "/pool/form/",
                body=b"v=2&csrfmiddlewaretoken=" + token,
                headers={
                    **proxy,
                    "Cookie": cookie,
                    "Origin": "https://site.example",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
    finally:
        balancer.close()
    assert status == 200
    answer = json.loads(body)
    assert answer["secure"] is True
    assert answer["absolute"].startswith("https://site.example/")
    assert posted[::2] == (200, b"posted 2")


# -- Django raising under the ErrorCatcher ---------------------------------------------


@pytest.fixture
def exceptions_signalled():
    seen = []

    def receiver(sender, request=None, **kwargs):
        seen.append(request.path)

    signals.got_request_exception.connect(receiver)
    yield seen
    signals.got_request_exception.disconnect(receiver)


@pytest.mark.parametrize("debug", [False, True])
def test_django_answers_its_own_view_errors(site, caplog, exceptions_signalled, debug):
    caplog.set_level(logging.CRITICAL, logger="django.request")
    with override_settings(DEBUG=debug):
        status, headers, body = fetch(site, "GET", "/site/boom/")
    assert status == 500
    assert "X-Error-Id" not in headers  # Django's own page, not the catcher's
    assert (b"the view failed" in body) is debug  # the traceback page only with DEBUG
    assert exceptions_signalled == ["/site/boom/"]
    assert errors_logged(caplog) == []


def test_propagated_errors_are_the_catchers(django_app, caplog, exceptions_signalled):
    hooked = []
    app = stack(django_app, hooks=[lambda exc_info, environ, error_id: hooked.append(error_id)])
    with override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True), live_server(app) as server:
        status, headers, body = fetch(
            server.address, "GET", "/site/boom/", headers={"Accept": "application/json"}
        )
    error_id = headers["X-Error-Id"]
    assert status == 500
    assert error_id in json.loads(body)["message"]
    assert b"the view failed" not in body
    assert hooked == [error_id]
    # Django still told its receivers (once per middleware the error passed, as
    # DEBUG_PROPAGATE_EXCEPTIONS does under any server).
    assert set(exceptions_signalled) == {"/site/boom/"}
    [record] = errors_logged(caplog)
    assert error_id in record.getMessage()
    assert record.exc_info[0] is ValueError
