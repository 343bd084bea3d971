"""The service's real processes as a test starts them: each restartable, each with a log per run,
all killed at teardown, pass or fail."""

import signal
import subprocess

import pytest

from .commands import kill_hard, start_process


class Processes:
    """Processes by name (``relay-0``, ``relay-1``, ...), each run writing a log of its own."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.running, self.logs, self.commands = {}, {}, {}

    def start(self, name, command, **settings):
        """Start ``name`` (again: with the command and settings of its first start if none given)."""
        command, settings = self.commands.setdefault(name, (command, settings))
        runs = self.logs.setdefault(name, [])
        runs.append(self.tmp_path / f"{name}-{len(runs)}.log")
        self.running[name] = start_process(command, stdout=runs[-1].open("w"), **settings)
        return self.running[name]

    def restart(self, name):
        self.start(name, None)

    def kill(self, name):
        """SIGKILL, with its children, at whatever point it was."""
        kill_hard(self.running.pop(name))

    def output(self, prefix):
        """Every run's log of the processes whose name starts with ``prefix``."""
        return "".join(
            log.read_text() for name, runs in self.logs.items() if name.startswith(prefix) for log in runs
        )

    def current_log(self, name):
        return self.logs[name][-1].read_text()

    def stop_all(self, timeout=30):
        """SIGTERM each, then SIGKILL whatever has not stopped in ``timeout``; the exit codes."""
        for process in self.running.values():
            process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self.running.items():
            try:
                codes[name] = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_hard(process)
                codes[name] = "killed"
        self.running = {}
        return codes


@pytest.fixture
def processes(tmp_path):
    """The test's processes; whatever still runs at teardown is killed."""
    owned = Processes(tmp_path)
    yield owned
    for process in owned.running.values():
        if process.poll() is None:
            kill_hard(process)
