"""Benchmark plumbing: start servers in their own process group, drive them with wrk.

Servers are stopped by the PID we started (its process group), never by name.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free port below the ephemeral range, so wrk's own client ports never take it."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 30000")


def start(
    command: list[str], env: dict[str, str] | None = None, stderr: Any = subprocess.DEVNULL
) -> subprocess.Popen:
    """Start ``command`` from the repository root in a new process group."""
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started (by its PID); SIGKILL if it lingers."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def group_cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time (user + system) used so far by the live processes of ``proc``'s group.

    Per-request CPU is steadier than req/s on a shared machine: other tenants
    slow the clock, not the work.  Linux only (reads /proc).
    """
    # Ours were started with a new session: the group is the server and its workers.
    return _cpu_seconds(lambda pid, fields: int(fields[2]) == proc.pid)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and its children (nginx: a master and its workers)."""
    return _cpu_seconds(lambda each, fields: each == pid or int(fields[1]) == pid)


def _cpu_seconds(belongs: Callable[[int, list[str]], bool]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if belongs(int(entry.name), fields):
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} ({last!r})")


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, *, seconds: int, connections: int, threads: int = 2, close: bool = False) -> dict:
    """Run wrk once; returns {'rps': float, 'p99': seconds, 'errors': int}."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if close:
        command[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s|m)", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p99": _seconds(*p99.groups()) if p99 else float("nan"),
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
    }


def rotated_rounds(
    urls: dict[str, str],
    *,
    rounds: int,
    seconds: int,
    connections: int,
    close: bool = False,
    cpu: dict[str, Callable[[], float]] | None = None,
) -> dict[str, list[dict]]:
    """wrk each URL once per round (after a 1 s warm-up), the order rotated every round.

    Everything is up at once and measured in turns, so a slow spell of the
    shared machine falls on every case rather than on whichever ran then.
    ``close``: each request on its own connection (``Connection: close``).
    ``cpu``: per case, a reading of the serving processes' CPU seconds; each
    run then also records ``cpu_us``, their CPU per request.
    """
    names = list(urls)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            wrk(urls[name], seconds=1, connections=connections, close=close)
            reading = cpu.get(name) if cpu else None
            before = reading() if reading else 0.0
            result = wrk(urls[name], seconds=seconds, connections=connections, close=close)
            if reading:
                used = reading() - before
                result["cpu_us"] = used / max(result["rps"] * seconds, 1.0) * 1e6
            runs[name].append(result)
    return runs


def print_medians(runs: dict[str, list[dict]], reference: str, heading: str) -> None:
    """A table of median req/s and p99 per case, and ``reference``'s ratio to each.

    The ratio is of the medians; beside it, the lowest and highest of the
    per-round ratios (each round's two runs are minutes apart at most), so a
    reader sees how far the drift of this shared machine moves it.
    """
    rps = {name: median(r["rps"] for r in results) for name, results in runs.items()}
    width, last = max(len(name) for name in runs) + 2, len(heading) + 2
    print(f"\nmedians of {len(runs[reference])} rounds")
    print(
        f"{'':<{width}} {'req/s':>9} {'p99':>10} {'errors':>7} {heading:>{last}} "
        f"{'rounds':>13} {'CPU us/req':>11}"
    )
    for name, results in runs.items():
        p99 = f"{median(r['p99'] for r in results) * 1000:.2f}ms"
        errors = sum(r["errors"] for r in results)
        ratio = f"{rps[reference] / rps[name]:.2f}x"
        per_round = [
            ours["rps"] / theirs["rps"]
            for ours, theirs in zip(runs[reference], results, strict=True)
        ]
        spread = f"{min(per_round):.2f}-{max(per_round):.2f}x"
        cpu = f"{median(r['cpu_us'] for r in results):.1f}" if "cpu_us" in results[0] else "-"
        print(
            f"{name:<{width}} {rps[name]:>9.0f} {p99:>10} {errors:>7} {ratio:>{last}} "
            f"{spread:>13} {cpu:>11}"
        )
