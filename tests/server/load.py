"""Client threads that keep a server busy and account for every request they make.

For the tests that signal a serving master (reload, stop, recycling): half
the threads reuse keep-alive connections, half open one per request.  Each
request ends as one of the outcomes below; only ``ok`` and ``retried`` (the
server closed an idle keep-alive connection before sending a byte, which an
HTTP client retries on a new one) are clean.

    with Load(port, requests=400) as load:
        ...                      # send a signal
        load.wait()              # until the bounded count is reached
    assert load.failures() == {}
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from types import TracebackType

__all__ = ["Load"]

_REQUEST = b"GET / HTTP/1.1\r\nHost: load\r\n\r\n"
_CLOSING = b"GET / HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n"


class _Cut(Exception):
    """The response ended early: ``kind`` says how (``clean``/``reset``, before or after a byte)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _read_response(sock: socket.socket) -> tuple[dict[str, str], bytes]:
    """One Content-Length response: (headers, body), or ``_Cut``."""
    data = b""

    def more() -> None:
        nonlocal data
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            raise _Cut("reset mid-response" if data else "reset before any byte") from None
        if not chunk:
            raise _Cut("truncated" if data else "clean close")
        data += chunk

    while b"\r\n\r\n" not in data:
        more()
    head, _, _ = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    size = len(head) + 4 + int(headers["content-length"])
    while len(data) < size:
        more()
    return headers, data[len(head) + 4 : size]


class Load:
    """``threads`` clients making ``requests`` requests in all (bounded by ``seconds``)."""

    def __init__(self, port: int, *, requests: int, threads: int = 4, seconds: float = 20.0):
        self.port = port
        self.requests = requests
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.pids: set[str] = set()
        self._lock = threading.Lock()
        self._started = 0
        self._deadline = time.monotonic() + seconds
        self._threads = [
            threading.Thread(target=self._client, args=(index % 2 == 0,), daemon=True)
            for index in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadline = 0.0
        self.wait()

    def wait(self) -> None:
        for thread in self._threads:
            thread.join(timeout=max(1.0, self._deadline - time.monotonic() + 10.0))

    @property
    def ok(self) -> int:
        return self.outcomes["ok"]

    def failures(self) -> dict[str, int]:
        """Outcomes other than a full response or a retried clean close."""
        return {k: n for k, n in self.outcomes.items() if k not in ("ok", "retried")}

    def _take(self) -> bool:
        with self._lock:
            if self._started >= self.requests or time.monotonic() > self._deadline:
                return False
            self._started += 1
            return True

    def _note(self, outcome: str, pid: str = "") -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if pid:
                self.pids.add(pid)

    def _client(self, keep_alive: bool) -> None:
        sock: socket.socket | None = None
        reused = False
        while self._take():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
                    reused = False
                sock.sendall(_REQUEST if keep_alive else _CLOSING)
                headers, body = _read_response(sock)
            except _Cut as cut:
                # A keep-alive connection the server closed between requests, with
                # an orderly close before any byte: a client retries the request.
                retried = cut.kind == "clean close" and reused
                self._note("retried" if retried else cut.kind)
            except ConnectionRefusedError:
                self._note("refused")
            except OSError as exc:
                self._note(f"{type(exc).__name__} sending")
            else:
                self._note("ok", body.decode())
                if keep_alive and headers.get("connection") != "close":
                    reused = True
                    continue
            if sock is not None:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()
