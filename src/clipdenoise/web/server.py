"""Run the demo app in a background thread (notebooks, tests, scripts).

``clipdenoise serve`` runs uvicorn in the foreground; :class:`BackgroundServer` runs the same app
on a free (or given) port without blocking, and stops it cleanly.
"""

from __future__ import annotations

import json
import socket
import threading
import time

from clipdenoise.web.settings import LOCALHOST, ServeConfig

#: Seconds an idle keep-alive connection stays open between requests.
KEEP_ALIVE_S = 5.0
#: Largest request head (request line + headers) accepted, in bytes.
MAX_HEADER_BYTES = 16 * 1024


def guarded_protocol(header_timeout_s: float):
    """uvicorn's h11 protocol with two changes for untrusted clients.

    - Requests that are not valid HTTP (or whose head exceeds :data:`MAX_HEADER_BYTES`) get
      the API's JSON error shape, ``{"error": ...}``, instead of uvicorn's ``text/plain``.
    - A client must complete a request's head within ``header_timeout_s`` seconds of
      connecting or of its previous response, or it is disconnected (uvicorn alone waits
      forever for a client that connects and sends nothing, or trickles its headers).

    Returns:
        A protocol class for ``uvicorn.Config(http=...)``.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_timer = None
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._head_too_slow)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing() and self._waiting_for_head():
                self.transport.close()

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._waiting_for_head():
                self._arm_head_timer()
            else:
                self._disarm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm_head_timer()  # the keep-alive timeout covers the idle wait

        def connection_lost(self, exc) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": "the request is not valid HTTP"}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"connection", b"close"),
                (b"content-length", str(len(body)).encode()),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return GuardedH11Protocol


def uvicorn_options(config: ServeConfig) -> dict:
    """The uvicorn settings every demo server runs with (``clipdenoise serve`` and
    :class:`BackgroundServer`): the guarded protocol, keep-alive and header limits."""
    return {
        "http": guarded_protocol(config.request_timeout_s),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "server_header": False,
        "date_header": False,
    }


class BackgroundServer:
    """Serve an ASGI ``app`` with uvicorn in a daemon thread.

    Args:
        app: The application (:func:`clipdenoise.web.create_app`).
        host: Interface to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`url`).
        startup_timeout_s: Seconds to wait for the server to accept connections.
        config: Limits for the connections (request timeout); default: the ones ``app`` was
            created with.

    Example:
        >>> from clipdenoise.web import build_catalogue, create_app
        >>> app = create_app(build_catalogue(tiny_demo=True, include_imported=False))
        >>> with BackgroundServer(app) as server:  # doctest: +SKIP
        ...     print(server.url)
        http://127.0.0.1:54321/
    """

    def __init__(
        self,
        app,
        host: str = LOCALHOST,
        port: int = 0,
        startup_timeout_s: float = 30.0,
        config: ServeConfig | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.config = config or getattr(getattr(app, "state", None), "serve_config", ServeConfig())
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> BackgroundServer:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", **uvicorn_options(self.config))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [listener]},
            name="clipdenoise-web",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the demo server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
