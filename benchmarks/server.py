"""The reference server against gunicorn (gthread, sync), waitress and bjoern, with wrk.

Each server serves ``benchmarks.apps:hello`` on a loopback port in turn, with
the same process and thread counts where the server has them; wrk drives it
with keep-alive and then with ``Connection: close``.  Ratios are computed
within this one run (these machines are shared and noisy).

    python benchmarks/server.py [--seconds 5] [--workers 2] [--threads 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import free_port, start, stop, wait_listening, wrk

PY = sys.executable


def commands(port: int, workers: int, threads: int) -> dict[str, list[str]]:
    bind = f"127.0.0.1:{port}"
    found = {
        "wsgistack": [
            PY,
            "-m",
            "wsgistack.cli",
            "serve",
            "benchmarks.apps:hello",
            "--bind",
            bind,
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        "gunicorn-gthread": [
            PY,
            "-m",
            "gunicorn",
            "--no-control-socket",  # gunicorn 27 shares one control socket path by default
            "-b",
            bind,
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            "benchmarks.apps:hello",
        ],
        "gunicorn-sync": [
            PY,
            "-m",
            "gunicorn",
            "--no-control-socket",  # gunicorn 27 shares one control socket path by default
            "-b",
            bind,
            "-w",
            str(workers),
            "-k",
            "sync",
            "--log-level",
            "warning",
            "benchmarks.apps:hello",
        ],
        "waitress": [
            PY,
            "-m",
            "waitress",
            f"--listen={bind}",
            f"--threads={workers * threads}",
            "benchmarks.apps:hello",
        ],
    }
    if importlib.util.find_spec("bjoern") is not None:
        found["bjoern"] = [
            PY,
            "-c",
            f"import bjoern, benchmarks.apps as a; bjoern.run(a.hello, '127.0.0.1', {port})",
        ]
    return found


def measure(name: str, command: list[str], port: int, seconds: int, connections: int) -> dict:
    with tempfile.TemporaryFile() as said:
        proc = start(command, stderr=said)
        try:
            try:
                wait_listening(port)
            except RuntimeError as exc:
                said.seek(0)
                text = said.read().decode(errors="replace")[-2000:]
                raise RuntimeError(
                    f"{name} did not start (exit {proc.poll()}): {exc}\n{text}"
                ) from None
            url = f"http://127.0.0.1:{port}/"
            wrk(url, seconds=1, connections=connections)  # warm up
            return {
                "keep-alive": wrk(url, seconds=seconds, connections=connections),
                "close": wrk(url, seconds=seconds, connections=connections, close=True),
            }
        finally:
            stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    versions = {name: version(name) for name in ("gunicorn", "waitress")}
    if importlib.util.find_spec("bjoern"):
        versions["bjoern"] = version("bjoern")
    print("peers:", ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(
        f"workers={args.workers} threads={args.threads} connections={args.connections} "
        f"seconds={args.seconds}"
    )
    results = {}
    for name in commands(0, args.workers, args.threads):
        port = free_port()
        command = commands(port, args.workers, args.threads)[name]
        results[name] = measure(name, command, port, args.seconds, args.connections)
    ours = results["wsgistack"]
    for mode in ("keep-alive", "close"):
        print(f"\n{mode}:")
        print(f"  {'server':<18} {'req/s':>10} {'p99':>10} {'errors':>7} {'wsgistack is':>14}")
        for name, result in results.items():
            r = result[mode]
            ratio = ours[mode]["rps"] / r["rps"]
            print(
                f"  {name:<18} {r['rps']:>10.0f} {r['p99'] * 1000:>8.2f}ms {r['errors']:>7} "
                f"{ratio:>13.2f}x"
            )


if __name__ == "__main__":
    main()
