"""Serve Streamlit's frontend bundle from memory, gzipped once, in front of Streamlit's own stack.

A browser's first visit loads `index.html` and the 61 scripts and stylesheets it names (2.3 MB).
Streamlit serves each through uvicorn and its seven Starlette middlewares, reading the file and
sending it uncompressed: 204 ms of server CPU per first visit on this 2-core machine, under the
GIL the script runs need. A lecture hall is 200 first visits in the same minute, some 40 CPU
seconds before any page has run. Streamlit leaves compression of these files to "a reverse
proxy or CDN"; README's run command has none. `StaticAssets` answers `GET /static/...` before
the request reaches Streamlit: each file is read and gzipped (level 6) once, on its first
request, and sent from memory to a browser that accepts gzip (0.69 MB and 44 CPU-ms a visit;
per visit: 10 first visits in a row, server CPU from /proc). 200 at once, `python -m
benchmarks.load --journey quiz --sessions 200 --answers 0 --first-visit`: p95 35 s -> 4.5 s
(README, "Lecture-hall load").

The files are content-hashed by Streamlit's build, so they are sent with the same one-year
`immutable` cache header Streamlit uses. Anything that is not a file under the bundle's
`static/` folder (a `..`, an unknown name) goes on to Streamlit unchanged.
"""

from __future__ import annotations

import gzip
import mimetypes
import threading
from pathlib import Path
from typing import NamedTuple

import streamlit

ROUTE = "/static/"
CACHE_CONTROL = b"public, immutable, max-age=31536000"
GZIP_LEVEL = 6  # level 9 makes the 480 kB main script 1% smaller for twice the time, once


class Asset(NamedTuple):
    body: bytes
    gzipped: bytes
    content_type: bytes


def bundle_folder() -> Path:
    """The folder Streamlit serves `/static/...` from (its package's `static/static`)."""
    return Path(streamlit.__file__).resolve().parent / "static" / "static"


class StaticAssets:
    """ASGI middleware: `/static/...` from memory, everything else to the wrapped app."""

    def __init__(self, app, folder: Path | None = None) -> None:
        self.app = app
        self.folder = (folder or bundle_folder()).resolve()
        self._assets: dict[str, Asset | None] = {}  # URL path -> asset, None: not ours
        self._lock = threading.Lock()

    def asset(self, path: str) -> Asset | None:
        """The asset for a URL path under ROUTE, read and gzipped on first use; None if the
        path names no file inside the bundle folder."""
        if path in self._assets:
            return self._assets[path]
        with self._lock:
            if path not in self._assets:
                self._assets[path] = self._load(path)
        return self._assets[path]

    def _load(self, path: str) -> Asset | None:
        file = (self.folder / path[len(ROUTE):]).resolve()
        if not file.is_relative_to(self.folder) or not file.is_file():
            return None
        body = file.read_bytes()
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return Asset(body, gzip.compress(body, GZIP_LEVEL, mtime=0), content_type.encode())

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        asset = (self.asset(path) if path.startswith(ROUTE) and scope["method"] in ("GET", "HEAD")
                 else None)
        if asset is None:
            await self.app(scope, receive, send)
            return
        accepts_gzip = any(name == b"accept-encoding" and b"gzip" in value
                           for name, value in scope["headers"])
        body = asset.gzipped if accepts_gzip else asset.body
        headers = [(b"content-type", asset.content_type), (b"cache-control", CACHE_CONTROL),
                   (b"vary", b"accept-encoding"), (b"content-length", str(len(body)).encode())]
        if accepts_gzip:
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body",
                    "body": body if scope["method"] == "GET" else b""})
