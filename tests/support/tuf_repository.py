"""A tenant's TUF repository exported to a folder and served over real HTTP on loopback.

The server can play the attacker: serve other bytes at a path, stream a file without end, or
break a transfer off part-way. It logs every request so tests can tell what the client fetched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

from securesystemslib.signer import CryptoSigner

from opensphere.updates.repository import (
    DEFAULT_POLICY,
    Channel,
    ExpiryPolicy,
    ImageTarget,
    OnlineSigners,
    RepositoryState,
    RootSigners,
    initial_repository,
    publish_targets,
)
from opensphere.updates.static import export_static

ENDLESS_CAP = 64 << 20


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_online() -> OnlineSigners:
    return OnlineSigners(*(CryptoSigner.generate_ed25519() for _ in range(4)))


def new_root(count: int = 2, threshold: int = 2) -> RootSigners:
    return RootSigners(tuple(CryptoSigner.generate_ed25519() for _ in range(count)), threshold)


def image(data: bytes, security_version: int = 1) -> ImageTarget:
    return ImageTarget(
        length=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        image_id=uuid.uuid4(),
        component_id=uuid.uuid4(),
        image_type="Application",
        security_version=security_version,
    )


@dataclass
class Request:
    path: str
    range: str | None


class RepositoryServer:
    """Serves `folder` on 127.0.0.1 (HTTP/1.1, keep-alive, byte ranges) from a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[Request] = []
        self.overrides: dict[str, bytes] = {}
        self.endless: set[str] = set()
        self.cut_after: dict[str, int] = {}
        self.ranges = True
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.repository = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/metadata/"

    @property
    def targets_url(self) -> str:
        return f"{self.url}/targets/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def paths(self) -> list[str]:
        with self._lock:
            return [request.path for request in self.requests]

    def forget_requests(self) -> None:
        with self._lock:
            self.requests.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    repository: RepositoryServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the request log is in `RepositoryServer.requests`."""

    def do_GET(self) -> None:
        repository = self.server.repository
        path = self.path.split("?", 1)[0]
        repository.log(Request(path, self.headers.get("Range")))
        if path in repository.endless:
            self._endless()
            return
        data = repository.overrides.get(path)
        if data is None:
            file = (repository.folder / path.lstrip("/")).resolve()
            if not file.is_relative_to(repository.folder.resolve()) or not file.is_file():
                self._send(404, b"not found")
                return
            data = file.read_bytes()
        cut = repository.cut_after.pop(path, None)
        if cut is not None:
            self._send(200, data, cut=cut)
            return
        start = _range_start(self.headers.get("Range")) if repository.ranges else None
        if start is None:
            self._send(200, data)
        elif start >= len(data):
            self._send(416, b"", extra={"Content-Range": f"bytes */{len(data)}"})
        else:
            content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], extra={"Content-Range": content_range})

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        cut: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True

    def _endless(self) -> None:
        """No length, no end: bytes until the client hangs up (or a cap, should it not)."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b"\x00" * 65536
        try:
            for _ in range(ENDLESS_CAP // len(chunk)):
                self.wfile.write(chunk)
        except OSError:
            return


def _range_start(header: str | None) -> int | None:
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    return int(header.removeprefix("bytes=").removesuffix("-"))


@contextmanager
def serving(folder: Path) -> Iterator[RepositoryServer]:
    server = RepositoryServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Repository:
    """The service side: keys, the current state, and its export in `folder`."""

    folder: Path
    root: RootSigners = field(default_factory=new_root)
    online: OnlineSigners = field(default_factory=new_online)
    blobs: dict[str, bytes] = field(default_factory=dict)
    state: RepositoryState | None = None

    def create(self, now: dt.datetime | None = None, policy: ExpiryPolicy = DEFAULT_POLICY) -> None:
        self.publish(
            initial_repository(
                root=self.root, online=self.online, now=now or utcnow(), policy=policy
            )
        )

    @property
    def current(self) -> RepositoryState:
        if self.state is None:
            raise RuntimeError("create the repository first")
        return self.state

    def deploy(
        self,
        channel: Channel,
        files: dict[str, bytes],
        *,
        now: dt.datetime | None = None,
        policy: ExpiryPolicy = DEFAULT_POLICY,
    ) -> RepositoryState:
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        targets = {name: image(data) for name, data in files.items()}
        state = publish_targets(
            self.current, channel, targets, online=self.online, now=now or utcnow(), policy=policy
        )
        return self.publish(state)

    def publish(self, state: RepositoryState) -> RepositoryState:
        self.state = state
        export_static(state, self.folder, open_blob=self._open_blob)
        return state

    def _open_blob(self, sha256: str) -> IO[bytes]:
        return io.BytesIO(self.blobs[sha256])
