"""``python -m orders_app.procfile_runner``: `make run`'s runner of the Procfile's processes.

What ``honcho start`` did, in one process (decision 0031): the Procfile read and each line
printed by honcho's own pieces (``honcho.environ``, ``honcho.printer.Printer``: the same
prefixes, colours and ``system`` lines), but every process's output read here with one selector
and large reads, and the lines of one turn of the loop written to the terminal at once; honcho
has a process per child that sends each line through a multiprocessing queue.

As with honcho, each process is a shell (``exec`` in the Procfile) in a session of its own, so
Ctrl-C reaches this runner only. SIGINT, SIGTERM or any process ending sends SIGTERM to the
process group of each one still running, SIGKILL after ``KILL_WAIT`` seconds. The exit status is
honcho's on a signal (130, 143); when a process ended first, its status, and 1 if that was 0: a
stack short of a process has failed.
"""

import contextlib
import datetime
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from honcho.colour import get_colours
from honcho.environ import expand_processes, parse_procfile
from honcho.printer import Message, Printer

KILL_WAIT = 5.0  # seconds from SIGTERM to SIGKILL, as honcho
READ_SIZE = 65536  # a pipe's whole buffer
READ_INTERVAL = 0.02  # seconds at least between two reads of the output: its lines come together
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}
SYSTEM = "system"


class Turn:
    """The Printer's output: it prints and flushes line by line; ``end`` writes a turn's lines at once."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal = terminal
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing: ``end`` writes."""

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def end(self) -> None:
        if self.parts:
            self.terminal.write("".join(self.parts))
            self.terminal.flush()
            self.parts.clear()


@dataclass
class Child:
    """A process of the Procfile, and how far the runner is with it."""

    name: str
    colour: str
    popen: "subprocess.Popen[bytes]"
    output: IO[bytes]
    partial: bytes = b""  # the start of a line whose newline has not been read yet
    reading: bool = True  # until its output's end
    stopped: bool = False  # ended, its output read to the end, and said so


def _wake(signum: int, frame: FrameType | None) -> None:
    """Nothing: the signal's number reaches the loop through the wakeup fd."""


class Runner:
    """The Procfile's processes, their output on ``terminal``, until all have stopped."""

    def __init__(self, procfile: Path, terminal: TextIO) -> None:
        self.processes = expand_processes(parse_procfile(procfile.read_text()).processes)
        self.turn = Turn(terminal)
        width = max(len(SYSTEM), *(len(process.name) for process in self.processes))
        self.printer = Printer(self.turn, width=width)
        self.selector = selectors.DefaultSelector()
        self.children: list[Child] = []
        self.returncode: int | None = None
        self.kill_at: float | None = None
        self.reap = False  # a child may have exited: a SIGCHLD or an output's end came
        self.now = datetime.datetime.now()

    def run(self) -> int:
        """Start every process, print their lines until all have stopped; the exit status."""
        wakeup_reader, wakeup_writer = os.pipe()
        os.set_blocking(wakeup_writer, False)
        signal.set_wakeup_fd(wakeup_writer, warn_on_full_buffer=False)
        for signum in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, _wake)
        self.selector.register(wakeup_reader, selectors.EVENT_READ)
        for process, colour in zip(self.processes, get_colours(), strict=False):
            popen = subprocess.Popen(
                process.cmd,
                shell=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **process.env},
            )
            assert popen.stdout is not None
            child = Child(process.name, colour, popen, popen.stdout)
            self.children.append(child)
            self.selector.register(child.output, selectors.EVENT_READ, child)
            self.system(f"{child.name} started (pid={popen.pid})")
        while not all(child.stopped for child in self.children):
            self.step()
        assert self.returncode is not None
        return self.returncode

    def step(self) -> None:
        """One turn: read what is ready, note who ended, stop or kill the rest when it is time."""
        timeout = None if self.kill_at is None else max(0.0, self.kill_at - time.monotonic())
        ready = self.selector.select(timeout)
        self.now = datetime.datetime.now()
        output = False
        for key, _ in ready:
            if key.data is None:
                self.signalled(os.read(key.fd, READ_SIZE))
            else:
                self.read(key.data)
                output = True
        if self.reap:
            self.reap = False
            for child in self.children:
                if not child.stopped and child.popen.poll() is not None:
                    self.ended(child)
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.kill_at = None  # SIGKILL once: no process outlasts it
            self.signal_all(signal.SIGKILL)
        self.turn.end()
        if output:
            time.sleep(READ_INTERVAL)

    def read(self, child: Child) -> None:
        data = os.read(child.output.fileno(), READ_SIZE)
        if not data:
            self.selector.unregister(child.output)
            child.output.close()
            child.reading = False
            self.reap = True
            data = b"\n" if child.partial else b""
        lines, newline, child.partial = (child.partial + data).rpartition(b"\n")
        if newline:
            self.printer.write(Message("line", lines + newline, self.now, child.name, child.colour))

    def signalled(self, signums: bytes) -> None:
        self.reap = True
        for signum in signums:
            if signum in STOP_SIGNALS:
                self.system(f"{signal.Signals(signum).name} received")
                self.stop(STOP_SIGNALS[signal.Signals(signum)])

    def ended(self, child: Child) -> None:
        """The child's process has exited: once its output is read, say so and stop the others."""
        returncode = child.popen.returncode
        status = 128 - returncode if returncode < 0 else returncode or 1
        if not child.reading:
            child.stopped = True
            self.system(f"{child.name} stopped (rc={returncode})")
        self.stop(status)

    def stop(self, returncode: int) -> None:
        """The first cause of a stop gives the exit status and sends each process SIGTERM."""
        if self.returncode is None:
            self.returncode = returncode
            self.kill_at = time.monotonic() + KILL_WAIT
            self.signal_all(signal.SIGTERM)

    def signal_all(self, signum: signal.Signals) -> None:
        for child in self.children:
            if not child.stopped:
                self.system(f"sending {signum.name} to {child.name} (pid {child.popen.pid})")
                with contextlib.suppress(ProcessLookupError):  # its group has ended since the last turn
                    os.killpg(child.popen.pid, signum)

    def system(self, text: str) -> None:
        self.printer.write(Message("line", text, self.now, SYSTEM, None))


if __name__ == "__main__":
    sys.exit(Runner(Path("Procfile"), sys.stdout).run())
