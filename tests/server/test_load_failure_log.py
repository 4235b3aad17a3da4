"""What a master logs when its workers cannot load the app: the last line says it."""

from __future__ import annotations

import re


def test_the_last_line_says_the_app_cannot_load_and_the_exit_status(serve):
    # It ended "the app cannot be loaded, stopping", "master: quick stop",
    # "master N: stopped" after "listening on ...": the last line read as a
    # normal stop, and the reason was three lines up.
    server = serve("--workers", "1", target=("no_such_module_xyz:app",), wait=False)
    assert server.proc.wait(timeout=15) == 2
    lines = server.log.read_text().splitlines()
    worker = re.search(r"ERROR worker (\d+): cannot load the app: ", lines[-2])
    assert worker is not None, lines
    assert re.search(
        rf"ERROR master \d+: stopped, exit status 2: the app cannot be loaded"
        rf" \(worker {worker[1]} says why above\)$",
        lines[-1],
    )
    assert not any("quick stop" in line for line in lines)
    assert re.search(r"INFO master \d+: starting 1 worker$", "\n".join(lines), re.MULTILINE)
