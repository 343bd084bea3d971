"""What every long-running process needs: a graceful stop, patient reconnecting, periodic tasks
between its own work, a heartbeat."""

import contextlib
import logging
import os
import random
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike, StrPath

log = logging.getLogger(__name__)


class GracefulStop:
    """Set by SIGTERM/SIGINT (or ``request()``); ``wait`` sleeps until then, or until a socket is readable.

    A pipe makes the stop wake any ``select`` at once, so a process never sleeps through it.
    """

    def __init__(self) -> None:
        self.requested = False
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)

    def install(self) -> None:
        """Route SIGTERM and SIGINT here (main thread only)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("Received %s: stopping after the work in hand", signal.Signals(signum).name)
        self.request()

    def request(self) -> None:
        self.requested = True
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is already pending
            os.write(self._write_end, b"!")

    def wait(self, timeout: float, *readers: "FileDescriptorLike") -> "list[FileDescriptorLike]":
        """Sleep up to ``timeout`` seconds; return the ``readers`` that became readable."""
        if self.requested:
            return []
        readable, _, _ = select.select([self._read_end, *readers], [], [], timeout)
        return [reader for reader in readable if reader is not self._read_end]


class Backoff:
    """Exponential delays with jitter between reconnection attempts, reset after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.reset()

    def reset(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)


class PeriodicTask:
    """``run()`` every ``seconds``, the first time at once: work a process's loop does between its
    own (``run_if_due``). ``run`` handles the failures that only skip its round; any other
    exception goes up to the loop. ``name`` is what logs call it."""

    def __init__(self, name: str, seconds: float, run: Callable[[], None]) -> None:
        self.name, self.seconds, self.run = name, seconds, run
        self._next = time.monotonic()

    def run_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.seconds
            self.run()

    def __str__(self) -> str:
        return f"{self.name} every {self.seconds:g} s"


class Heartbeat:
    """Touches ``HEARTBEAT_FILE`` (if set) each time a process's loop turns; a container health
    check reads the file's age (``python -m orders_app.healthcheck file``)."""

    def __init__(self, path: "StrPath | None") -> None:
        self.path = Path(path) if path else None

    def beat(self) -> None:
        if self.path:
            self.path.touch()


def keep_serving(
    name: str,
    serve: Callable[[], None],
    stop: GracefulStop,
    backoff: Backoff,
    failures: tuple[type[Exception], ...],
    heartbeat: Heartbeat,
) -> None:
    """Call ``serve`` until ``stop`` is requested; when it fails with one of ``failures`` (a
    dependency went away), log, back off and call it again. Never exits because of an outage."""
    while not stop.requested:
        try:
            serve()
        except failures as error:
            heartbeat.beat()  # alive, and retrying
            delay = backoff.next_delay()
            log.warning(
                "%s cannot reach a dependency (%s: %s); retrying in %.1f s",
                name,
                type(error).__name__,
                error,
                delay,
            )
            stop.wait(delay)
    log.info("%s stopped", name)
