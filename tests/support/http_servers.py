"""Local HTTP servers standing in for the edge of the world: a merchant's server
(return URL, webhook endpoint) that records what it received and answers as told."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class MerchantServer:
    """``answer(received) -> (status, body)`` decides each response (200 "ok" by default)."""

    answer: Callable[[Received], tuple[int, bytes]] = lambda r: (200, b"ok")
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> MerchantServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                got = Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                               self.rfile.read(length))
                with owner._lock:
                    owner.received.append(got)
                status, body = owner.answer(got)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def merchant_server(answer: Callable[[Received], tuple[int, bytes]] | None = None) -> Iterator[MerchantServer]:
    server = MerchantServer(answer=answer) if answer else MerchantServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
