"""The reference server against gunicorn (gthread, sync), waitress and bjoern, with wrk.

Every server serves ``benchmarks.apps:hello`` on its own loopback port, all
up at once, with the same process and thread counts where the server has
them (waitress is one process: it gets workers x threads threads; bjoern is
one process, one thread).  wrk drives them in turns, the order rotated each
round, with keep-alive and then with ``Connection: close``; medians over the
rounds are reported, ratios within this one run (these machines are shared
and noisy).  gunicorn's sync worker has no keep-alive (it closes after each
response, by design), so its keep-alive row measures connections anyway.
gunicorn keeps its worker heartbeat files in /dev/shm, as its docs advise
where /tmp is on disk.

    python benchmarks/server.py [--seconds 5] [--rounds 3] [--workers 2] [--threads 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _wrk import free_port, print_medians, rotated_rounds, start, stop, wait_listening

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
            "--worker-tmp-dir",
            "/dev/shm",
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
            "--worker-tmp-dir",
            "/dev/shm",
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


def launch(name: str, command: list[str], port: int, said) -> subprocess.Popen:
    """Start one server and wait for its port; say why if it does not come up."""
    proc = start(command, stderr=said)
    try:
        wait_listening(port)
    except RuntimeError as exc:
        said.seek(0)
        text = said.read().decode(errors="replace")[-2000:]
        stop(proc)
        raise RuntimeError(f"{name} did not start (exit {proc.poll()}): {exc}\n{text}") from None
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
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
        f"seconds={args.seconds} rounds={args.rounds}"
    )
    procs: list[subprocess.Popen] = []
    urls = {}
    with tempfile.TemporaryFile() as said:
        try:
            for name in commands(0, args.workers, args.threads):
                port = free_port()
                command = commands(port, args.workers, args.threads)[name]
                procs.append(launch(name, command, port, said))
                urls[name] = f"http://127.0.0.1:{port}/"
            for mode in ("keep-alive", "close"):
                runs = rotated_rounds(
                    urls,
                    rounds=args.rounds,
                    seconds=args.seconds,
                    connections=args.connections,
                    close=mode == "close",
                )
                print(f"\n{mode}:", end="")
                print_medians(runs, "wsgistack", "wsgistack is")
        finally:
            for proc in procs:
                stop(proc)


if __name__ == "__main__":
    main()
