"""A local HTTP server standing in for signal providers: routes path prefixes to handlers that
answer in the providers' recorded shapes, and records every request."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Request = dict[str, Any]
Route = Callable[[Request], tuple[int, bytes]]


class Provider:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, body: bytes | None) -> None:
                url = urllib.parse.urlsplit(self.path)
                req = {"path": url.path, "query": dict(urllib.parse.parse_qsl(url.query)),
                       "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                provider.requests.append(req)
                route = next((r for p, r in provider.routes.items() if url.path.startswith(p)), None)
                status, payload = route(req) if route else (404, b"")
                self.send_response(status)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._serve(None)

            def do_POST(self) -> None:
                self._serve(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def paths(self, prefix: str) -> list[Request]:
        return [r for r in self.requests if r["path"].startswith(prefix)]
