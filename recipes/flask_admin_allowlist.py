"""A Flask app whose /admin is open only to the office network, behind a load balancer.

What it solves: the site is public, but /admin must answer only people in
the office (192.0.2.0/24).  Requests arrive through our load balancers
(10.0.0.0/8), which append the real client to X-Forwarded-For; anyone can
send that header themselves, so it is believed only from the balancers.

Needs: pip install flask

Run it:
    wsgistack serve recipes.flask_admin_allowlist:app --bind 127.0.0.1:8000

What to expect:
    curl 127.0.0.1:8000/                 -> 200 (public)
    curl 127.0.0.1:8000/admin/           -> 403 (127.0.0.1 is not the office)
    # as if the balancer forwarded an office client (the peer must be a balancer):
    curl -H 'X-Forwarded-For: 192.0.2.10' 127.0.0.1:8000/admin/   -> still 403 here,
    because 127.0.0.1 is not a trusted balancer: a spoofed header changes nothing.

Through a balancer that terminates TLS, Flask's own URLs (the /admin -> /admin/
redirect, url_for(..., _external=True)) say https:// and the public host name:
X-Forwarded-Proto and X-Forwarded-Host are believed, like X-Forwarded-For,
only when a balancer is the peer.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from wsgistack.clientip import ProxyTrust, trusts_peer
from wsgistack.middlewares import IPFilter

OFFICE = ["192.0.2.0/24", "2001:db8:0:1::/64"]
LOAD_BALANCERS = ProxyTrust(["10.0.0.0/8"])


def from_balancers(app):
    """The scheme and host the client used, as the balancer says, when it is the peer.

    werkzeug's ProxyFix alone believes whoever connects: anyone who reaches the
    app directly could make it build links to a host of their choosing.
    """
    fixed = ProxyFix(app, x_for=0, x_proto=1, x_host=1)

    def app_or_fixed(environ, start_response):
        return (fixed if trusts_peer(environ, LOAD_BALANCERS) else app)(environ, start_response)

    return app_or_fixed


flask_app = Flask(__name__)


@flask_app.get("/")
def home() -> str:
    return "public home page"


@flask_app.get("/admin/")
def admin() -> str:
    return "admin dashboard"


flask_app.wsgi_app = from_balancers(flask_app.wsgi_app)  # type: ignore[method-assign]
flask_app.wsgi_app = IPFilter(  # type: ignore[method-assign]
    flask_app.wsgi_app,
    allow=OFFICE,
    paths=["/admin"],
    trusted_proxies=LOAD_BALANCERS,
)
app = flask_app
