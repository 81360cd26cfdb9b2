"""The loopback HTTP server shared by every sandbox stand-in, with fault knobs.

A stand-in is a `Service`: it turns a `Request` into a `Response`. The server adds what a
real service does to clients on a bad day, driven by `Knobs`: latency, a share of
failures (an HTML 502 page, as a proxy sends), a concurrency limit answered with 429 and
Retry-After, and scripted one-off answers (`script`) for tests that need an exact sequence.
Every request is logged in memory so tests can count what the service saw.

Knobs can be changed in-process or over HTTP (`POST /_sandbox/knobs` with a JSON object),
so a benchmark can tune a sandbox that runs in another process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

BIND_HOST = "127.0.0.1"

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")


@dataclasses.dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json"}
        merged.update(headers or {})
        return cls(status, json.dumps(data).encode("utf-8"), merged)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type})


@dataclasses.dataclass
class ScriptedResponse:
    """A one-off answer for the next request whose path contains `path` (any when empty)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    path: str = ""
    delay: float = 0.0


@dataclasses.dataclass
class Knobs:
    latency: float = 0.0  # seconds added to every answer
    jitter: float = 0.0  # up to this many seconds more, at random
    error_rate: float = 0.0  # share of requests answered with an HTML 502
    max_concurrency: int = 0  # requests in flight beyond this get 429; 0 means no limit
    retry_after: float = 1.0  # seconds announced in Retry-After with a 429
    seed: int = 7
    script: list[ScriptedResponse] = dataclasses.field(default_factory=list)

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name == "script":
                self.script = [ScriptedResponse(**_script_item(item)) for item in value]
            elif name in {field.name for field in dataclasses.fields(self)}:
                setattr(self, name, type(getattr(self, name))(value))
            else:
                raise ValueError(f"unknown sandbox knob {name!r}")


def _script_item(item: dict[str, Any]) -> dict[str, Any]:
    item = dict(item)
    if isinstance(item.get("body"), str):
        item["body"] = item["body"].encode("utf-8")
    return item


@dataclasses.dataclass
class LoggedRequest:
    at: float
    method: str
    path: str
    status: int
    body: bytes


class Service:
    """Base of every stand-in: subclasses set `name` and implement `handle`."""

    name = "service"

    def __init__(self) -> None:
        self.knobs = Knobs()
        self.log: list[LoggedRequest] = []
        self.lock = threading.RLock()
        self._in_flight = 0
        self._random = random.Random(self.knobs.seed)

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def serve(self, request: Request) -> Response:
        """Apply the knobs around `handle` and log the request."""
        if request.path.startswith("/_sandbox/"):
            return self._control(request)

        scripted = self._next_script(request)
        if scripted is not None:
            time.sleep(scripted.delay)
            return self._logged(request, Response(scripted.status, scripted.body, dict(scripted.headers)))

        with self.lock:
            limit = self.knobs.max_concurrency
            if limit and self._in_flight >= limit:
                retry = f"{self.knobs.retry_after:g}"
                answer = Response.json({"message": "429 Too Many Requests"}, 429, {"Retry-After": retry})
                return self._logged(request, answer)
            self._in_flight += 1
            fail = self.knobs.error_rate > 0 and self._random.random() < self.knobs.error_rate
            delay = self.knobs.latency + (self._random.random() * self.knobs.jitter if self.knobs.jitter else 0.0)

        try:
            if delay:
                time.sleep(delay)
            if fail:
                answer = Response(502, HTML_502, {"Content-Type": "text/html"})
            else:
                answer = self.handle(request)
        finally:
            with self.lock:
                self._in_flight -= 1
        return self._logged(request, answer)

    def _next_script(self, request: Request) -> ScriptedResponse | None:
        with self.lock:
            for index, item in enumerate(self.knobs.script):
                if not item.path or item.path in request.path:
                    return self.knobs.script.pop(index)
        return None

    def _logged(self, request: Request, answer: Response) -> Response:
        with self.lock:
            self.log.append(LoggedRequest(time.time(), request.method, request.path, answer.status, request.body))
        return answer

    def _control(self, request: Request) -> Response:
        if request.path == "/_sandbox/knobs" and request.method == "POST":
            try:
                with self.lock:
                    self.knobs.update(request.json() or {})
            except (ValueError, TypeError) as error:
                return Response.json({"error": str(error)}, 400)
            return Response.json({"ok": True})
        if request.path == "/_sandbox/log":
            with self.lock:
                entries = [{"method": item.method, "path": item.path, "status": item.status} for item in self.log]
            return Response.json(entries)
        return Response.json({"error": "unknown sandbox control path"}, 404)

    def requests_to(self, fragment: str, method: str | None = None) -> list[LoggedRequest]:
        with self.lock:
            return [
                item
                for item in self.log
                if fragment in item.path and (method is None or item.method == method)
            ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the client's
    # delayed ACK adds about 40 ms to every answer.
    disable_nagle_algorithm = True
    server: _Server

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            answer = self.server.service.serve(request)
        except Exception:  # a stand-in bug must not kill the server thread
            logger.exception("sandbox %s failed on %s %s", self.server.service.name, self.command, parts.path)
            answer = Response.text("internal error in the sandbox stand-in", 500)

        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox %s: " + format, self.server.service.name, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default of 5 drops connections when a benchmark opens many at once.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log at debug level a client that hung up mid-response (a timeout, a killed process)."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            logger.debug("sandbox %s: client %s hung up: %s", self.service.name, client_address, error)
            return
        super().handle_error(request, client_address)

    def __init__(self, service: Service, port: int) -> None:
        self.service = service
        super().__init__((BIND_HOST, port), _Handler)


class RunningService:
    """A service listening on 127.0.0.1 in a background thread."""

    def __init__(self, service: Service, port: int = 0) -> None:
        self.service = service
        self._server = _Server(service, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{service.name}", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{BIND_HOST}:{self.port}"

    def start(self) -> RunningService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
