"""PrefixDispatcher cost per request with 3 and 300 mounts, against werkzeug's dispatcher.

werkzeug's ``DispatcherMiddleware`` tries the path's prefixes one by one
(``rpartition("/")`` in a loop); ours walks the path's segments through a
dict trie.  Both route the same requests to the same hello-world app, in the
same run, timed in alternating turns (best of each).

    python benchmarks/dispatch.py
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

from werkzeug.middleware.dispatcher import DispatcherMiddleware

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt, per_call_interleaved

from wsgistack.middlewares import PrefixDispatcher


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def start_response(status, headers, exc_info=None):
    return None


def main() -> None:
    # No options; --help says what the script measures instead of running it.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(f"werkzeug {version('werkzeug')}")
    print(f"{'mounts':>7} {'path':<28} {'wsgistack':>12} {'werkzeug':>12} {'speed-up':>9}")
    costs = {}
    for count in (3, 300):
        mounts = {f"/service{i}/api": app for i in range(count)}
        ours = PrefixDispatcher(mounts, default=app)
        theirs = DispatcherMiddleware(app, mounts)
        last = f"/service{count - 1}/api/users/42/orders"
        for path in (last, "/unmounted/page/x"):
            environ = {"PATH_INFO": path, "SCRIPT_NAME": "", "REQUEST_METHOD": "GET"}

            def call_ours(environ=environ, ours=ours):
                ours(dict(environ), start_response)

            def call_theirs(environ=environ, theirs=theirs):
                theirs(dict(environ), start_response)

            # In alternating turns: a slow spell falls on both alike.
            times = per_call_interleaved({"ours": call_ours, "theirs": call_theirs}, calls=50_000)
            a, b = times["ours"], times["theirs"]
            costs[(count, path.startswith("/unmounted"))] = a
            print(f"{count:>7} {path:<28} {fmt(a)} {fmt(b)} {b / a:8.2f}x")
    for unmounted in (False, True):
        ratio = costs[(300, unmounted)] / costs[(3, unmounted)]
        kind = "unmounted" if unmounted else "mounted"
        print(f"wsgistack 300 vs 3 mounts ({kind} path): {ratio:.2f}x the cost")


if __name__ == "__main__":
    main()
