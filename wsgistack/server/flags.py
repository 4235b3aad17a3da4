"""The flags of ``wsgistack serve``: each option's metavar and help, in the order --help shows them.

The values go through ``options.OPTIONS``, as a file's and the keywords of
``Server`` do; this table only says how the command line spells and explains
them (``cli.add_serve`` builds the parser from it).

    for name, metavar, text in FLAGS:   # ("bind", "ADDRESS", "HOST:PORT, ...")
        parser.add_argument("--" + name.replace("_", "-"), metavar=metavar or None, help=text)
"""

from __future__ import annotations

__all__ = ["ACTIONS", "FLAGS", "GUNICORN_SPELLINGS", "spelling_hints"]

#: (option, metavar, help) in the order --help shows them; values go through options.OPTIONS.
FLAGS = (
    (
        "bind",
        "ADDRESS",
        "HOST:PORT, [IPv6]:PORT, unix:/path or fd://N (a listening socket inherited as"
        " descriptor N); uwsgi://HOST:PORT (uwsgi://fd://N) speaks uwsgi; repeat for"
        " several (default 127.0.0.1:8000; under systemd socket activation, the"
        " sockets it passes)",
    ),
    (
        "protocol",
        "NAME",
        "http, or uwsgi for nginx's uwsgi_pass: what binds without a scheme speak (default http)",
    ),
    ("workers", "N", "worker processes; 0 serves in this process, without a master (default 1)"),
    ("threads", "N", "request threads per worker (default 4)"),
    (
        "timeout",
        "SECONDS",
        "time a client has to send a request head, the longest wait for more of its"
        " body (then 408), and for it to take a response (default 30)",
    ),
    ("keepalive", "SECONDS", "how long an idle keep-alive connection is kept (default 5)"),
    (
        "graceful_timeout",
        "SECONDS",
        "time in-flight requests get to finish on SIGTERM or SIGHUP (default 30)",
    ),
    (
        "worker_timeout",
        "SECONDS",
        "time a worker's loop may stop turning (hung) before the master kills and"
        " replaces it; at least 2, 0 turns it off (default 60)",
    ),
    (
        "max_requests",
        "N",
        "recycle a worker after about this many requests; needs --workers 1 or more;"
        " 0 never (default 0)",
    ),
    (
        "max_body_size",
        "BYTES",
        "largest request body, larger ones get 413; 0 for no limit (default 104857600, 100 MiB)",
    ),
    (
        "max_request_line",
        "BYTES",
        "longest request line in bytes, method, target and version together (as gunicorn's"
        " --limit-request-line counts it), longer ones get 414 (default 8190)",
    ),
    ("max_headers", "N", "most header fields in a request, more get 431 (default 100)"),
    (
        "max_header_size",
        "BYTES",
        "largest size of a request's header fields together, larger get 431 (default 16384)",
    ),
    (
        "root_path",
        "PATH",
        "SCRIPT_NAME the app is mounted at, decoded and without a query, e.g. /api (default none)",
    ),
    (
        "access_log",
        "FILE",
        "write a line for every request to FILE, or to stdout with -, in the combined format"
        " unless --access-log-format says otherwise (default off)",
    ),
    (
        "access_log_format",
        "FORMAT",
        "the access log's line in gunicorn's atoms, e.g. '%%(h)s \"%%(r)s\" %%(s)s %%(D)s'"
        " (default: the combined format)",
    ),
    (
        "log_level",
        "LEVEL",
        "debug, info, warning, error or critical; with --log-config, the level of the"
        " wsgistack loggers unless the file gives them one (default info)",
    ),
    (
        "error_log",
        "FILE",
        "append the server's log lines (and the app's logging, through the root logger)"
        " to FILE, reopened on SIGUSR1, or - for standard error (default -)",
    ),
    (
        "log_config",
        "FILE",
        "set up logging from FILE, applied again on SIGHUP: a .json or .toml file holds a"
        " logging.config.dictConfig dictionary, any other is a fileConfig ini (as"
        " gunicorn's --log-config); existing loggers are kept (default none)",
    ),
    (
        "env",
        "KEY=VALUE",
        "set an environment variable in the master before the app is loaded, as"
        " gunicorn's -e (DJANGO_SETTINGS_MODULE=mysite.settings); repeat for several",
    ),
    (
        "pythonpath",
        "DIR[,DIR]",
        "directories put first on sys.path before the app is loaded, relative ones from"
        " where the command runs, or --chdir's DIR (default none)",
    ),
    (
        "pid",
        "FILE",
        "write the master's PID (with --workers 0, the server's) to FILE, removed at exit"
        " (default none)",
    ),
    (
        "backlog",
        "N",
        "connections the kernel queues for accept(), the listen() backlog (default 2048)",
    ),
    (
        "socket_mode",
        "MODE",
        "octal permissions of the unix:/path sockets, e.g. 660 (default: as the umask leaves them)",
    ),
    (
        "forwarded_allow_ips",
        "ADDRESSES",
        "proxies (addresses or CIDR networks, comma-separated; * for any) whose"
        " X-Forwarded-Proto: https makes wsgi.url_scheme https; unix-socket peers"
        " always count (default $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1)",
    ),
    (
        "preload",
        "",
        "load the app once in the master, after binding and before the workers fork from"
        " it, as gunicorn's --preload: the workers share its memory and start without an"
        " import, and an app that cannot load stops the start once (status 2); SIGHUP then"
        " keeps the code loaded at start (restart for new code). Not with --reload",
    ),
    (
        "user",
        "NAME",
        "a user name or UID the workers switch to after the fork, before loading the app;"
        " the master stays root to bind, the unix socket files and the log files are"
        " given to the user (default: as started)",
    ),
    (
        "group",
        "NAME",
        "a group name or GID the workers switch to (default: --user's primary group)",
    ),
    ("umask", "MODE", "octal file mode mask of the server, e.g. 027 (default: as started)"),
    (
        "chdir",
        "DIR",
        "change to DIR before binding and load the app from it (a symlink followed at"
        " each load); relative paths of the options then name files in DIR, while"
        " --config or --paste's is from where the command runs (default: where it runs)",
    ),
    (
        "certfile",
        "FILE",
        "serve HTTPS on every http bind (uwsgi:// binds stay plain) with this PEM"
        " certificate, its chain after it; SIGHUP loads it again (default none)",
    ),
    (
        "keyfile",
        "FILE",
        "the certificate's PEM private key, unencrypted (there is no password option);"
        " not needed if --certfile holds it",
    ),
    (
        "ca_certs",
        "FILE",
        "PEM CA certificates that client certificates are verified against; needs --cert-reqs",
    ),
    (
        "cert_reqs",
        "WHICH",
        "client certificates: none, optional (verified if shown) or required; not"
        " gunicorn's numbers (default none)",
    ),
    ("ciphers", "LIST", "OpenSSL cipher list for TLS 1.2 (default: Python's, TLS 1.2 minimum)"),
    (
        "proxy_protocol",
        "",
        "every http bind expects a PROXY protocol header (v1 or v2, as HAProxy and TCP"
        " load balancers send) before the request or the TLS handshake; its source"
        " address becomes REMOTE_ADDR. A connection without a valid one is closed"
        " (default off)",
    ),
    (
        "proxy_allow_from",
        "ADDRESSES",
        "with --proxy-protocol, the balancers (addresses or CIDR networks, comma-separated;"
        " * for any) that may send the header; other peers are closed unread"
        " (default 127.0.0.1,::1)",
    ),
    (
        "statsd_host",
        "HOST:PORT",
        "send metrics to this StatsD daemon over UDP (or unix:/path), under gunicorn's"
        " names: gunicorn.requests, gunicorn.request.duration, ... (default none)",
    ),
    ("statsd_prefix", "PREFIX", "put before every metric's name, a dot added (default none)"),
    (
        "dogstatsd_tags",
        "TAGS",
        "Datadog tags added to every metric, e.g. env:prod,service:shop (default none)",
    ),
    (
        "reload",
        "",
        "for development: when a file of the app's modules (or the --config or --paste"
        " file) changes, reload the workers as SIGHUP does; code that fails to load is"
        " logged and answered with 500 until the next change. Needs --workers 1 or more",
    ),
    (
        "reload_extra_file",
        "FILE",
        "with --reload, also reload when FILE changes (a template, a data file); repeat"
        " for several",
    ),
)
#: The flags that are not one value: repeated ones, and --reload and --preload, which take none.
ACTIONS = {
    "bind": "append",
    "env": "append",
    "reload_extra_file": "append",
    "reload": "store_true",
    "preload": "store_true",
    "proxy_protocol": "store_true",
}

#: gunicorn's spellings of options we have under another name, or not at all:
#: a command line carried over from gunicorn is refused saying what to write
#: here, not only as "unrecognized".  (gunicorn's --timeout is accepted, with
#: our meaning: the README's table says so.)
GUNICORN_SPELLINGS = {
    "-w": "is --workers here",
    "-b": "is --bind here",
    "-p": "is --pid here",
    "-u": "is --user here",
    "-g": "is --group here",
    "-m": "is --umask here",
    "-t": "(its worker watchdog) is --worker-timeout here",
    "--keep-alive": "is --keepalive here",
    "--error-logfile": "is --error-log here",
    "--log-file": "is --error-log here",
    "--access-logfile": "is --access-log here",
    "--access-logformat": "is --access-log-format here",
    "--limit-request-line": "is --max-request-line here",
    "--limit-request-fields": "is --max-headers here",
    "--limit-request-field_size": "is --max-header-size here",
    "--log-config-json": "is --log-config with a .json file here",
    "--max-requests-jitter": "has no counterpart: --max-requests is jittered by 10% of itself",
    "--worker-class": "has no counterpart: workers serve with threads (--threads)",
    "-k": "has no counterpart: workers serve with threads (--threads)",
}


def spelling_hints(unrecognized: list[str]) -> str:
    """What to write here for gunicorn's spellings among ``unrecognized`` arguments, or ``""``."""
    names = dict.fromkeys(argument.partition("=")[0] for argument in unrecognized)
    return "; ".join(
        f"gunicorn's {name} {GUNICORN_SPELLINGS[name]}"
        for name in names
        if name in GUNICORN_SPELLINGS
    )
