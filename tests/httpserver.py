"""A small threaded HTTP server on 127.0.0.1 for download tests (no internet needed).

It serves the files of one folder, answers `Range: bytes=N-` / `bytes=N-M` with 206 Partial Content
(or ignores Range when `range_support` is False, like some servers do), records every request, and can
misbehave on purpose per file:

* `drops[name] = [n1, n2, ...]`: the k-th request of `name` sends only nk body bytes and then closes
  the connection while the Content-Length still announces the full body;
* `stalls[name] = [n1, ...]`: same, but the server goes silent after nk bytes (for client timeouts).

Usage:
    with FileServer(folder) as server:
        server.drops["big.bin"] = [5000]
        urllib.request.urlopen(server.url + "/big.bin")
        server.requests  # [Request(path='/big.bin', range=None, status=200), ...]
"""
from __future__ import annotations

import re
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    path: str
    range: str | None
    status: int


class FileServer:
    def __init__(self, root: Path, *, range_support: bool = True):
        self.root = Path(root)
        self.range_support = range_support
        self.drops: dict[str, list[int]] = {}
        self.stalls: dict[str, list[int]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._release = threading.Event()  # wakes stalled handlers at shutdown
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True  # a stalled handler must not block shutdown
        # A short poll interval: shutdown() waits up to one interval, and tests start many servers.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def requests_for(self, name: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.lstrip("/") == name]

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # Called by the handler ------------------------------------------------------------------------
    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_fault(self, name: str) -> tuple[str, int] | None:
        """The fault to inject for this request of `name`, consumed so later requests behave."""
        with self._lock:
            for kind, table in (("drop", self.drops), ("stall", self.stalls)):
                if table.get(name):
                    return kind, table[name].pop(0)
        return None


def _make_handler(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            name = path.lstrip("/")
            file = (server.root / name).resolve()
            if not name or server.root.resolve() not in file.parents or not file.is_file():
                return self._reply(path, 404, b"not found")
            data = file.read_bytes()
            range_header = self.headers.get("Range")
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
            if server.range_support and match:
                return self._partial(path, name, data, range_header, match)
            server._record(Request(path, range_header, 200))
            self._send_body(name, 200, data, {})

        def _partial(self, path, name, data, range_header, match) -> None:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data):
                server._record(Request(path, range_header, 416))
                return self._reply(path, 416, b"", {"Content-Range": f"bytes */{len(data)}"}, record=False)
            end = min(end, len(data) - 1)
            server._record(Request(path, range_header, 206))
            headers = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
            self._send_body(name, 206, data[start : end + 1], headers)

        def _send_body(self, name: str, status: int, body: bytes, headers: dict) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes" if server.range_support else "none")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            fault = server._next_fault(name)
            if fault is None:
                self.wfile.write(body)
                return
            kind, limit = fault
            self.wfile.write(body[:limit])
            self.wfile.flush()
            if kind == "stall":
                server._release.wait(timeout=10)
            self.close_connection = True  # the client sees EOF before Content-Length bytes

        def _reply(self, path, status, body, headers=None, record=True) -> None:
            if record:
                server._record(Request(path, self.headers.get("Range"), status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler
