"""A KeyboardInterrupt while the app loads: a Ctrl-C stops quietly, the app's own is a load failure.

Each server is a real ``wsgistack serve`` in a subprocess, signalled by PID.
"""

from __future__ import annotations

import signal

import pytest

from .served import HELD_IMPORT, poll


@pytest.mark.parametrize(
    "options",
    [("--workers", "0"), ("--workers", "2", "--preload", "--pid", "server.pid")],
    ids=["in-process", "preload"],
)
def test_a_ctrl_c_while_the_app_imports_in_process_stops_with_one_line(serve, tmp_path, options):
    # It used to end with a KeyboardInterrupt traceback through the CLI's
    # frames.  Now one line: the user asked for it, there is nothing to debug.
    # It still dies of SIGINT as Python does (a shell shows 130), so a shell
    # script running it stops too.  A master loading it (--preload) has bound
    # and written its pid file first, and leaves neither behind.
    (tmp_path / "slowimport.py").write_text(HELD_IMPORT)
    server = serve(*options, target=("slowimport:app",), wait=False)
    poll((tmp_path / "loading").exists)  # inside the import
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=20) == -signal.SIGINT
    log = server.log.read_text()
    assert "wsgistack serve: interrupted while loading the app" in log, log
    assert "Traceback" not in log and "cannot load" not in log
    assert ("listening on" in log) == ("--preload" in options)
    assert not (tmp_path / "server.pid").exists() and "worker" not in log


@pytest.mark.parametrize(
    "workers", [("1",), ("0",), ("1", "--preload")], ids=["master", "in-process", "preload"]
)
def test_an_app_that_raises_keyboard_interrupt_itself_is_a_load_failure(serve, tmp_path, workers):
    # No signal came: the app's own code raised it.  A worker logged "worker N
    # failed" and the master "died while loading the app (status 1)"; in
    # process it was a bare traceback and status 1.  Now it is what a SystemExit
    # there is: the app named, its traceback, status 2.
    (tmp_path / "interrupts.py").write_text("raise KeyboardInterrupt('no input here')\n")
    server = serve("--workers", *workers, target=("interrupts:app",), wait=False)
    assert server.proc.wait(timeout=15) == 2
    log = server.log.read_text()
    assert "cannot load the app: 'interrupts:app': KeyboardInterrupt: no input here\n" in log, log
    assert 'interrupts.py", line 1' in log
    assert "died while loading" not in log and "respawning" not in log
