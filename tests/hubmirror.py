"""A real HTTP server on 127.0.0.1 shaped like the Hugging Face Hub, for pull tests.

Serves `GET /api/models/{repo}/revision/{rev}` (siblings with size, git blob id and, for files
marked LFS, the LFS sha256) and `GET /{repo}/resolve/{rev}/{path}` with `Range` support.
Knobs (set on the `HubMirror` object between requests):
  - corrupt: {path} whose served bytes get one byte flipped (metadata keeps the true hash);
  - drop_after: {path: n} - the first request for path sends the full Content-Length header
    but closes the connection after n bytes (then serves normally);
  - token: when set, requests without `Authorization: Bearer <token>` get 401.
Every request is recorded in `requests` as (method, path, range header).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class MirrorFile:
    data: bytes
    lfs: bool = True


@dataclass
class HubMirror:
    repos: dict[str, dict[str, MirrorFile]] = field(default_factory=dict)
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    corrupt: set[str] = field(default_factory=set)
    drop_after: dict[str, int] = field(default_factory=dict)
    token: str = ""
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, repo: str, path: str, data: bytes, *, lfs: bool = True) -> None:
        self.repos.setdefault(repo, {})[path] = MirrorFile(data, lfs)

    def start(self) -> HubMirror:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                path = unquote(parsed.path)
                mirror.requests.append(("GET", path, self.headers.get("Range", "")))
                if mirror.token and self.headers.get("Authorization") != f"Bearer {mirror.token}":
                    self._send(401, b'{"error":"unauthorized"}')
                    return
                if path.startswith("/api/models/"):
                    rest = path[len("/api/models/") :]
                    repo, _, _rev = rest.partition("/revision/")
                    files = mirror.repos.get(repo)
                    if files is None:
                        self._send(404, b'{"error":"Repository not found"}')
                        return
                    siblings = []
                    for name, f in files.items():
                        blob = hashlib.sha1(f"blob {len(f.data)}\0".encode() + f.data).hexdigest()
                        entry: dict[str, object] = {
                            "rfilename": name,
                            "size": len(f.data),
                            "blobId": blob,
                        }
                        if f.lfs:
                            entry["lfs"] = {
                                "sha256": hashlib.sha256(f.data).hexdigest(),
                                "size": len(f.data),
                                "pointerSize": 134,
                            }
                        siblings.append(entry)
                    body = json.dumps({"id": repo, "sha": mirror.commit, "siblings": siblings})
                    self._send(200, body.encode())
                    return
                for repo, files in mirror.repos.items():
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):
                        _rev, _, name = path[len(prefix) :].partition("/")
                        if name in files:
                            self._serve_file(name, files[name].data)
                            return
                self._send(404, b'{"error":"Entry not found"}')

            def _serve_file(self, name: str, data: bytes) -> None:
                if name in mirror.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[len("bytes=") : -1])
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = mirror.drop_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
