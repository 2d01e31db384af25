"""Serve a simulator's WSGI app on a loopback socket from a background thread.

Tests and `syncd sandbox` use real sockets so that syncd's HTTP stack (connection pooling,
timeouts, keep-alive) is exercised exactly as against a real server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug logs every request at INFO; the simulators keep their own request log."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """As the base class, minus its own `Date`: the simulator sends one from its clock."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":
            logging.getLogger("syncd.sandbox").debug(message % args)


class ServerThread:
    """A threaded HTTP/1.1 server for one WSGI app, bound to 127.0.0.1."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the simulators only listen on loopback addresses")
        self.app = app
        _QuietHandler.protocol_version = "HTTP/1.1"
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"sim-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
