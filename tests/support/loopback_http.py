"""What the in-process fake OpenAI-protocol servers share: a threaded HTTP server on a free
loopback port, run in a daemon thread, and a handler base that checks the key and sends JSON.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LoopbackServer:
    """``with Subclass(...) as server: server.base_url``; the subclass passes a handler
    class of its own (a JSONHandler subclass made per server), which gets ``api_key``."""

    def __init__(self, handler: type[JSONHandler], api_key: str | None = None):
        self.api_key = handler.api_key = api_key
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class JSONHandler(BaseHTTPRequestHandler):
    """Quiet, HTTP/1.1, with the key check and JSON replies both fake servers need."""

    protocol_version = "HTTP/1.1"
    api_key: str | None = None  # set by LoopbackServer on the server's own subclass

    def log_message(self, format: str, *args: Any) -> None:
        return

    def authorised(self) -> bool:
        """True for the right key (or none configured); otherwise answers 401 itself."""
        if self.api_key is None:
            return True
        given = self.headers.get("Authorization", "")
        if given == f"Bearer {self.api_key}":
            return True
        # Echo what was sent, as a careless server might: the client must not pass
        # server error text on without redacting the key.
        message = f"Incorrect API key provided: {given.removeprefix('Bearer ')}"
        self.send_json(401, {"error": {"message": message, "type": "auth"}})
        return False

    def send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self.send_raw(status, json.dumps(body).encode("utf-8"), headers)

    def send_raw(
        self, status: int, data: bytes, headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
