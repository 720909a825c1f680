"""Round trips counted on the wire: a TCP proxy in front of a PostgreSQL server that reads the client's messages.

A round trip is a request the server answers with ``ReadyForQuery`` and the client waits for: a ``Query``
(simple protocol, however many statements its text holds) or a ``Sync`` (extended protocol, closing one
statement or a whole pipeline of them). Whatever the driver, and however the bytes are cut into TCP segments.
Counted, not timed, so that a loaded machine does not blur it. (Counting changes of direction instead miscounts:
a driver may send a ``Flush`` after its ``Sync`` while the answer is already on its way.)

    with RoundTripCounter("127.0.0.1", 5432) as counter:
        url = counter.route("postgresql://postgres@127.0.0.1:5432/db")  # the same URL through the proxy
        before = counter.count
        ...  # statements on a connection opened with `url`
        trips = counter.count - before
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType

__all__ = ["RoundTripCounter"]


_ROUND_TRIP = (ord("Q"), ord("S"))  # Query, Sync
_STARTUP = 196608  # protocol 3.0: the startup message; SSLRequest and GSSENCRequest come before it


class _Pair:
    """One client connection and its upstream one, and the client's bytes not yet read as whole messages."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.pending = b""
        self.closed = False
        self.started = False
        """Past the startup message: messages have a type byte from then on."""

    def round_trips(self, data: bytes) -> int:
        """Read ``data`` from the client; how many Query and Sync messages it completes."""
        buf = self.pending + data
        count = 0
        while True:
            if not self.started:
                if len(buf) < 8:
                    break
                size = int.from_bytes(buf[:4], "big")
                if len(buf) < size:
                    break
                self.started = int.from_bytes(buf[4:8], "big") == _STARTUP
                buf = buf[size:]
                continue
            if len(buf) < 5:
                break
            size = 1 + int.from_bytes(buf[1:5], "big")
            if len(buf) < size:
                break
            count += buf[0] in _ROUND_TRIP
            buf = buf[size:]
        self.pending = buf
        return count


class RoundTripCounter:
    """A proxy on a free loopback port forwarding to a PostgreSQL server at ``host:port``, counting the round
    trips of every connection through it (`count`). Connect with a URL from `route`."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.count = 0
        """Round trips so far, over every connection through the proxy."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="round-trip-counter", daemon=True)
        self._thread.start()

    def route(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's, and TLS off (the proxy reads the messages)."""
        # Split by hand: urllib refuses a scheme such as postgresql+psycopg_async (the underscore).
        scheme, _, rest = url.partition("://")
        netloc, slash, path = rest.partition("/")
        userinfo = netloc.rpartition("@")[0]
        host = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return f"{scheme}://{host}{slash}{path}{'&' if '?' in path else '?'}sslmode=disable"

    def _serve(self) -> None:
        while not self._stop:
            for key, _ in self._selector.select(timeout=0.1):
                if key.data is None:
                    self._accept()
                else:
                    self._forward(key.fileobj, *key.data)  # type: ignore[arg-type]  # our sockets

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(self.upstream)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, server)
        self._selector.register(client, selectors.EVENT_READ, (pair, True))
        self._selector.register(server, selectors.EVENT_READ, (pair, False))

    def _forward(self, sock: socket.socket, pair: _Pair, from_client: bool) -> None:
        if pair.closed:  # both ends were ready in one select(), and the other one's end closed the pair
            return
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            pair.closed = True
            for end in (pair.client, pair.server):
                self._selector.unregister(end)
                end.close()
            return
        # Counted before the bytes go on: once the client has its answer, the count includes its request.
        if from_client:
            self.count += pair.round_trips(data)
        (pair.server if from_client else pair.client).sendall(data)

    def close(self) -> None:
        """Stop forwarding and close every socket."""
        self._stop = True
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]  # sockets
        self._selector.close()

    def __enter__(self) -> RoundTripCounter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
