"""Local ports and a TCP proxy: dependencies that are down, hang, are slow or get cut."""

import contextlib
import socket
import struct
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit


def free_port():
    """A local port where nothing listens (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_port_url(scheme, path=""):
    """A URL on a local port where nothing listens: a dependency that is down."""
    return f"{scheme}://127.0.0.1:{free_port()}{path}"


@contextmanager
def silent_server():
    """A port that accepts connections and never answers: a dependency that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


class TcpProxy:
    """A local port forwarding to the server of ``url`` that a test can close, reset and open again.

    Closed, its port refuses connections and the open ones are cut: the service went away.
    ``reset()`` aborts the open connections with a TCP RST and keeps accepting new ones.
    With ``latency`` (seconds) every chunk sent to the service is held that long: a slow service.
    ``hold()`` keeps what clients send from reaching the service until ``release()``.
    ``url`` is the same URL, pointing at the proxy; ``accepted`` counts the connections made.
    """

    def __init__(self, url, latency=0.0):
        parts = urlsplit(url)
        self.target = (parts.hostname, parts.port)
        self.port = free_port()
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{self.port}")
        self.url = parts._replace(netloc=netloc).geturl()
        self.latency = latency
        self._flowing = threading.Event()
        self._flowing.set()
        self.accepted = 0
        self._server = None
        self._connections = []
        self._lock = threading.Lock()

    def start(self):
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        return self

    def stop(self):
        with self._lock:
            sockets, self._connections = [self._server, *self._connections], []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def reset(self):
        """Abort every open connection with a TCP RST (SO_LINGER 0); new ones are still accepted."""
        with self._lock:
            sockets, self._connections = self._connections, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)  # wakes the pump blocked on it; sends nothing
            sock.close()  # the last reference gone, the kernel answers the peer with a RST

    def hold(self):
        self._flowing.clear()

    def release(self):
        self._flowing.set()

    def _accept(self, server):
        while True:
            try:
                client, _ = server.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._connections += [client, upstream]
                self.accepted += 1
            for source, sink, to_service in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, to_service), daemon=True).start()

    def _pump(self, source, sink, to_service):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if to_service:
                    time.sleep(self.latency)
                    self._flowing.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
