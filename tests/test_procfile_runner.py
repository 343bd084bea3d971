"""orders_app.procfile_runner, `make run`'s runner, on Procfiles of small processes written here.

Each process is a Python script (CHILD) that says what it did on its output: the runner is
judged by what it prints, its exit status and what became of the processes.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.polling import wait_for
from support.settings import ROOT

pytestmark = pytest.mark.system

CHILD = """\
import os, signal, sys, time
from pathlib import Path

def stop(signum, frame):
    print(f"{sys.argv[2]} got {signal.Signals(signum).name}", flush=True)
    sys.exit(0 if signum == signal.SIGTERM else 5)

mode, name = sys.argv[1:3]
if mode == "exit":  # once the processes named are ready
    deadline = time.monotonic() + 20
    while not all(Path(f"{other}.ready").exists() for other in sys.argv[4:]) and time.monotonic() < deadline:
        time.sleep(0.01)
    sys.exit(int(sys.argv[3]))
elif mode == "lines":
    char, count, length = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    for _ in range(count):
        os.write(1, (char * length + "\\n").encode())
    os.write(1, b"the last line, without a newline")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
else:
    signal.signal(signal.SIGTERM, stop if mode == "serve" else signal.SIG_IGN)
    signal.signal(signal.SIGINT, stop)
    print(f"{name} ready", flush=True)
Path(f"{name}.ready").write_text(str(os.getpid()))
while True:
    signal.pause()
"""


@pytest.fixture
def procfile(tmp_path):
    """Writes the Procfile (one ``name: arguments of CHILD`` per item) in ``tmp_path``; kills what is left."""
    (tmp_path / "child.py").write_text(CHILD)

    def write(**processes):
        lines = [
            f"{name}: exec {sys.executable} child.py {arguments}" for name, arguments in processes.items()
        ]
        (tmp_path / "Procfile").write_text("\n".join(lines) + "\n")

    yield write
    for ready in tmp_path.glob("*.ready"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(ready.read_text()), signal.SIGKILL)


class Run:
    """The runner started in ``directory`` as `make run` starts it: a process group of its own."""

    def __init__(self, directory):
        self.directory = directory
        self.log = directory / "runner.log"
        environment = {**os.environ, "PYTHONPATH": ROOT}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orders_app.procfile_runner"],
            cwd=directory,
            env=environment,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self):
        return self.log.read_text()

    def wait_ready(self, *names):
        wait_for(lambda: all(f"{name} ready" in self.output() for name in names), message=f"{names} ready")

    def wait(self, timeout=30):
        try:
            return self.process.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def pids(self):
        return [int(ready.read_text()) for ready in self.directory.glob("*.ready")]


def gone(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize(("code", "status"), [(3, 3), (0, 1)], ids=["failed", "exited-0"])
def test_one_process_ending_stops_the_others_and_the_run_fails(procfile, tmp_path, code, status):
    procfile(web="serve web", worker="serve worker", quitter=f"exit quitter {code} web worker")
    run = Run(tmp_path)
    assert run.wait() == status
    output = run.output()
    assert f"quitter.1 stopped (rc={code})" in output
    for name in ("web", "worker"):
        assert f"sending SIGTERM to {name}.1" in output
        assert f"{name} got SIGTERM" in output
        assert f"{name}.1 stopped (rc=0)" in output
    assert "sending SIGTERM to quitter.1" not in output


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_to_the_group_stops_every_process_with_sigterm(procfile, tmp_path, signum, status):
    procfile(web="serve web", worker="serve worker")
    run = Run(tmp_path)
    run.wait_ready("web", "worker")
    os.killpg(run.process.pid, signum)  # Ctrl-C in a terminal signals its foreground group
    assert run.wait() == status
    output = run.output()
    assert f"{signum.name} received" in output
    for name in ("web", "worker"):
        assert f"{name} got SIGTERM" in output  # from the runner only: not the terminal's SIGINT
        assert f"{name}.1 stopped (rc=0)" in output
    assert all(gone(pid) for pid in run.pids())


def test_a_process_that_ignores_sigterm_is_killed(procfile, tmp_path):
    procfile(stubborn="stubborn stubborn", quitter="exit quitter 0 stubborn")
    run = Run(tmp_path)
    assert run.wait() == 1
    output = run.output()
    assert "sending SIGKILL to stubborn.1" in output
    assert "stubborn.1 stopped (rc=-9)" in output
    assert all(gone(pid) for pid in run.pids())


def test_each_line_is_printed_whole_after_its_process_name(procfile, tmp_path):
    # Lines longer than a pipe's atomic write (4 KiB) arrive in pieces, the two processes' at once.
    procfile(alpha="lines alpha a 300 9000", b="lines b b 300 9000", quitter="exit quitter 0 alpha b")
    run = Run(tmp_path)
    assert run.wait() == 1
    lines = run.output().splitlines()
    printed = {"alpha.1": [], "b.1": [], "system": []}
    for line in lines:
        match = re.fullmatch(r"\d\d:\d\d:\d\d (alpha\.1|b\.1|system) +\| (.*)", line)
        assert match, line[:100]
        printed[match[1]].append(match[2])
    assert printed["alpha.1"] == ["a" * 9000] * 300 + ["the last line, without a newline"]
    assert printed["b.1"] == ["b" * 9000] * 300 + ["the last line, without a newline"]
    assert lines[0].startswith(f"{lines[0][:8]} system    | ")  # the names padded to the longest: quitter.1
    assert "\x1b[" not in run.output()  # colours only on a terminal
