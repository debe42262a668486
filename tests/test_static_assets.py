"""static_assets: the frontend's files from memory, gzipped once; anything else to Streamlit."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from static_assets import StaticAssets, bundle_folder


class Inner:
    """The app behind the middleware (Streamlit's): records what reached it."""

    def __init__(self):
        self.paths = []

    async def __call__(self, scope, receive, send):
        self.paths.append(scope.get("path"))
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


def request(app, path: str, method: str = "GET", gzip_ok: bool = True, kind: str = "http"):
    """(status, headers, body) of one request through the ASGI app."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    headers = [(b"host", b"127.0.0.1")] + ([(b"accept-encoding", b"gzip, br")] if gzip_ok else [])
    asyncio.run(app({"type": kind, "method": method, "path": path, "headers": headers},
                    receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m["body"] for m in sent[1:])


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "static"
    (folder / "js").mkdir(parents=True)
    script = b"console.log('hematovision');\n" * 200
    (folder / "js" / "index.abc123.js").write_bytes(script)
    (tmp_path / "secret.txt").write_text("not for browsers")
    inner = Inner()
    return StaticAssets(inner, folder), inner, script


def test_a_script_comes_gzipped_with_streamlits_cache_header(bundle):
    app, inner, script = bundle
    status, headers, body = request(app, "/static/js/index.abc123.js")
    assert status == 200 and inner.paths == []
    assert headers[b"content-encoding"] == b"gzip" and gzip.decompress(body) == script
    assert len(body) < len(script) / 10 and headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"content-type"] in (b"text/javascript", b"application/javascript")
    assert headers[b"cache-control"] == b"public, immutable, max-age=31536000"
    assert headers[b"vary"] == b"accept-encoding"


def test_without_gzip_the_file_as_it_is_and_head_has_no_body(bundle):
    app, _, script = bundle
    status, headers, body = request(app, "/static/js/index.abc123.js", gzip_ok=False)
    assert status == 200 and body == script and b"content-encoding" not in headers
    status, headers, body = request(app, "/static/js/index.abc123.js", method="HEAD")
    assert status == 200 and body == b"" and int(headers[b"content-length"]) > 0


@pytest.mark.parametrize("path", ["/static/../secret.txt", "/static/js/../../secret.txt",
                                  "/static/js/missing.js", "/static/js", "/", "/_stcore/health",
                                  "/media/abc.jpg"])
def test_anything_not_a_file_of_the_bundle_goes_on_to_streamlit(bundle, path):
    app, inner, _ = bundle
    status, _, body = request(app, path)
    assert (status, body, inner.paths) == (404, b"inner", [path])


def test_uploads_and_websockets_go_on_to_streamlit(bundle):
    app, inner, _ = bundle
    request(app, "/static/js/index.abc123.js", method="POST")
    request(app, "/static/js/index.abc123.js", kind="websocket")
    assert len(inner.paths) == 2


def test_a_file_is_read_once(bundle, tmp_path):
    app, _, script = bundle
    request(app, "/static/js/index.abc123.js")
    (tmp_path / "static" / "js" / "index.abc123.js").write_bytes(b"changed")  # never, in a build
    assert gzip.decompress(request(app, "/static/js/index.abc123.js")[2]) == script


def test_the_bundle_folder_is_streamlits_own():
    index = (bundle_folder().parent / "index.html").read_text()
    assert "./static/js/index." in index and (bundle_folder() / "js").is_dir()
