"""Run the demo app in a background thread (notebooks, tests, scripts).

``clipdenoise serve`` runs uvicorn in the foreground; :class:`BackgroundServer` runs the same app
on a free (or given) port without blocking, and stops it cleanly.
"""

from __future__ import annotations

import socket
import threading
import time

from clipdenoise.web.settings import LOCALHOST


class BackgroundServer:
    """Serve an ASGI ``app`` with uvicorn in a daemon thread.

    Args:
        app: The application (:func:`clipdenoise.web.create_app`).
        host: Interface to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`url`).
        startup_timeout_s: Seconds to wait for the server to accept connections.

    Example:
        >>> from clipdenoise.web import build_catalogue, create_app
        >>> app = create_app(build_catalogue(tiny_demo=True, include_imported=False))
        >>> with BackgroundServer(app) as server:  # doctest: +SKIP
        ...     print(server.url)
        http://127.0.0.1:54321/
    """

    def __init__(
        self, app, host: str = LOCALHOST, port: int = 0, startup_timeout_s: float = 30.0
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
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
        config = uvicorn.Config(self.app, log_level="warning", server_header=False)
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
