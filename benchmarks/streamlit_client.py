"""A headless Streamlit browser: the websocket protocol and uploads, as the frontend speaks them.

One `BrowserSession` is one browser tab. It connects to `/_stcore/stream`, sends `BackMsg`
protobufs (`rerun_script` carrying a `ClientState`, `file_urls_request`) and reads `ForwardMsg`
protobufs until the run's final `script_finished`, then loads the run's new images from
`/media/`. Like the frontend it keeps every widget's current value between runs (defaults
included), sends buttons as one-run trigger values, takes the server's value when a delta says
`set_value`, and forgets widgets the last run did not draw. A widget inside an `st.fragment`
reruns only that fragment, whose new elements replace its old ones on the page kept.
Widgets are found by their user `key`: an element id is `$$ID-<hash>-<key>`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import FileURLs, FileUploaderState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.NumberInput_pb2 import NumberInput
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.state.common import GENERATED_ELEMENT_ID_PREFIX, user_key_from_element_id
from websockets.asyncio.client import connect

XSRF_COOKIE = "_streamlit_xsrf"
BROWSER_CONNECTIONS = 6  # a browser opens at most 6 HTTP/1.1 connections to one host
# What index.html makes a browser load before the app starts: its scripts and stylesheets.
FRONTEND_ASSET = re.compile(r'(?:src|href)="\.?/?(static/[^"]+\.(?:js|css))"')
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # above the server's own 200 MB message limit
FINAL_STATUSES = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR,
                  ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY)


class ProtocolError(RuntimeError):
    """The server answered something a browser could not go on from."""


def require_loopback(url: str) -> tuple[str, int]:
    """(host, port) of an http URL on this machine; ValueError for any other host.

    The tool opens hundreds of sessions at once: it must never be pointed at someone else's server.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"Expected a URL such as http://127.0.0.1:8501, got {url!r}.")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"Refusing to load {host!r}: only loopback addresses (127.0.0.0/8, "
                         "localhost, ::1) may be targeted by this load tool.")
    return host, parts.port or 80


async def load_frontend(base_url: str) -> int:
    """Load the app's frontend as a browser with an empty cache does on a first visit:
    `index.html`, then every script and stylesheet it names, over BROWSER_CONNECTIONS kept-alive
    connections, accepting gzip. Returns the bytes received (what crossed the network)."""
    host, port = require_loopback(base_url)
    status, _, index = await http_request(host, port, "GET", "/")
    if status != 200:
        raise ProtocolError(f"/ answered {status}")
    assets = sorted(set(FRONTEND_ASSET.findall(index.decode("utf-8", "replace"))))
    shares = [assets[i::BROWSER_CONNECTIONS] for i in range(BROWSER_CONNECTIONS)]
    sizes = await asyncio.gather(*(_get_kept_alive(host, port, share) for share in shares if share))
    return len(index) + sum(sizes)


async def _get_kept_alive(host: str, port: int, paths: list[str]) -> int:
    """GET each path in turn on one kept-alive connection, as a browser does; bytes received."""
    reader, writer = await asyncio.open_connection(host, port)
    received = 0
    try:
        for path in paths:
            writer.write((f"GET /{path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          "Accept-Encoding: gzip, deflate, br\r\n\r\n").encode("latin-1"))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {name.strip().lower(): value.strip() for name, _, value in
                       (line.partition(":") for line in header_lines if line)}
            if int(status_line.split()[1]) != 200 or "content-length" not in headers:
                raise ProtocolError(f"/{path} answered {status_line!r} "
                                    f"({'no ' if 'content-length' not in headers else ''}length)")
            received += len(head) + len(await reader.readexactly(int(headers["content-length"])))
    finally:
        writer.close()
    return received


async def http_request(host: str, port: int, method: str, path: str,
                       headers: dict[str, str] | None = None,
                       body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on its own connection: (status, lower-case headers, body).

    Hand-written on asyncio streams so uploads share the sessions' event loop with no new
    dependency; loopback only, `Connection: close`, so the body is whatever comes before EOF.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie" and name in found:  # several cookies: one per line
            found[name] += "\n" + value
        else:
            found.setdefault(name, value)
    return int(status_line.split()[1]), found, payload


def multipart_body(field_name: str, file_name: str, data: bytes,
                   mime_type: str) -> tuple[str, bytes]:
    """(content type, body) of a one-file multipart/form-data request, as the frontend sends it."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; "
            f"filename=\"{file_name}\"\r\nContent-Type: {mime_type}\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", head + data + tail


@dataclass(frozen=True)
class Widget:
    kind: str  # the Element oneof name: "button", "text_input", "file_uploader", ...
    id: str  # "$$ID-<hash>-<user key>"
    proto: object  # the widget's own message (e.g. a Button), for labels and options

    @property
    def key(self) -> str | None:
        return user_key_from_element_id(self.id)


@dataclass
class RunResult:
    """What one script run drew, as the browser would show it after the run."""
    elements: dict = field(default_factory=dict)  # delta path -> Element: the last one drawn there
    fragments: dict = field(default_factory=dict)  # delta path -> id of the st.fragment drawing it
    exceptions: list[str] = field(default_factory=list)  # every `exception` element sent
    page_not_found: str | None = None  # the page name the server did not know

    def widgets(self) -> list[Widget]:
        """Every widget of the run (elements whose id carries Streamlit's element-id prefix)."""
        return list(self.widget_paths().values())

    def widget_paths(self) -> dict[tuple, Widget]:
        """delta path -> widget, for every widget of the run."""
        found = {}
        for path, element in self.elements.items():
            kind = element.WhichOneof("type")
            proto = getattr(element, kind) if kind else None
            element_id = getattr(proto, "id", "") if proto is not None else ""
            if isinstance(element_id, str) and element_id.startswith(GENERATED_ELEMENT_ID_PREFIX):
                found[path] = Widget(kind, element_id, proto)
        return found

    def widget(self, key: str) -> Widget | None:
        return next((w for w in self.widgets() if w.key == key), None)

    def keys(self) -> list[str]:
        return [w.key for w in self.widgets() if w.key]

    def image_captions(self) -> list[str]:
        return [image.caption for element in self.elements.values()
                if element.WhichOneof("type") == "imgs" for image in element.imgs.imgs]

    def texts(self) -> list[str]:
        """Markdown, alerts and metric labels: enough to tell which screen a page shows."""
        texts = []
        for element in self.elements.values():
            kind = element.WhichOneof("type")
            if kind in ("markdown", "alert", "heading"):
                texts.append(getattr(element, kind).body)
            elif kind == "metric":
                texts.append(element.metric.label)
        return texts


def default_state(widget: Widget) -> WidgetState | None:
    """The value the frontend holds for a widget it has just drawn (or None: it holds none).

    Only the kinds these pages use; any other widget is left to the server's default.
    """
    proto, state = widget.proto, WidgetState(id=widget.id)
    if widget.kind in ("text_input", "text_area"):
        if not proto.HasField("value" if proto.set_value else "default"):
            return None
        state.string_value = proto.value if proto.set_value else proto.default
    elif widget.kind in ("selectbox", "radio"):
        if proto.set_value and proto.HasField("raw_value"):
            state.string_value = proto.raw_value
        elif proto.HasField("default") and 0 <= proto.default < len(proto.options):
            state.string_value = proto.options[proto.default]
        else:
            return None
    elif widget.kind == "number_input":
        if not proto.HasField("value" if proto.set_value else "default"):
            return None
        number = proto.value if proto.set_value else proto.default
        if proto.data_type == NumberInput.INT:
            state.int_value = int(number)
        else:
            state.double_value = number
    elif widget.kind == "checkbox":
        state.bool_value = proto.value if proto.set_value else proto.default
    else:
        return None
    return state


class BrowserSession:
    """One browser tab on one page of a Streamlit app; use as `async with`."""

    def __init__(self, base_url: str, receive_timeout: float = 300.0) -> None:
        self.host, self.port = require_loopback(base_url)  # an app served at the URL's root
        self.receive_timeout = receive_timeout  # for one ForwardMsg; steps add their own bound
        self.websocket = None
        self.xsrf_token = ""
        # Cookies the server set, sent back on every request as a browser does: Streamlit's XSRF
        # cookie, and behind a load balancer its affinity cookie, which keeps the websocket, the
        # image fetches and the uploads of this tab on one replica (deploy/, README "Scale out").
        self.cookies: dict[str, str] = {}
        self.session_id = ""  # the server's AppSession id, needed for uploads
        self.page_script_hash = ""
        self.page_name = ""
        self.app_pages: list = []
        self.widget_states: dict[str, WidgetState] = {}  # id -> current value, as the browser keeps
        self.widget_ids: dict[str, str] = {}  # user key -> id of the widgets the last run drew
        self.widget_fragments: dict[str, str] = {}  # widget id -> its st.fragment's id, or ""
        self.widget_forms: dict[str, str] = {}  # widget id -> its st.form's id, or ""
        self.form_submitters: dict[str, bool] = {}  # widget id -> is a form's submit button
        self.pending_forms: dict[str, dict] = {}  # form id -> values typed, not yet sent
        self.fetched_media: set[str] = set()  # image URLs already loaded: the browser's cache
        self.shown = RunResult()  # the page as the last run left it (a fragment run redraws part)

    async def __aenter__(self) -> "BrowserSession":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self.websocket is not None:
            await self.websocket.close()

    async def connect(self) -> None:
        """Get the XSRF cookie from the health endpoint, then open the websocket as the frontend does."""
        status, headers, _ = await http_request(self.host, self.port, "GET", "/_stcore/health")
        if status != 200:
            raise ProtocolError(f"/_stcore/health answered {status}")
        for cookie in headers.get("set-cookie", "").splitlines():
            name, _, value = cookie.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value.strip()
        self.xsrf_token = self.cookies.get(XSRF_COOKIE, "")
        # The frontend passes the XSRF token as the second websocket subprotocol entry.
        subprotocols = ["streamlit"] + ([self.xsrf_token] if self.xsrf_token else [])
        self.websocket = await connect(
            f"ws://{self.host}:{self.port}/_stcore/stream", subprotocols=subprotocols, origin=f"http://{self.host}:{self.port}",
            additional_headers=self._cookie_header(), max_size=MAX_MESSAGE_BYTES, proxy=None,
            ping_interval=None)  # the frontend sends no websocket pings

    def _cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items())}

    async def open_page(self, url_pathname: str) -> RunResult:
        """Run a page as a browser opening http://host/<url_pathname> does: by name, hash unknown."""
        self.page_name, self.page_script_hash = url_pathname, ""
        result = await self.rerun()
        if result.page_not_found is not None:
            raise ProtocolError(f"the app has no page {url_pathname!r}; pages: "
                                + ", ".join(p.url_pathname for p in self.app_pages))
        return result

    async def rerun(self, changes: list[WidgetState] = (), fragment_id: str = "") -> RunResult:
        """Send `rerun_script` with every widget's value plus `changes`; read until the run ends.

        Trigger values (buttons) in `changes` count for this run only, as in the browser. A
        change to a widget drawn inside an `st.fragment` asks for a run of that fragment only
        (`fragment_id`), as the browser does.
        """
        for state in changes:
            if state.WhichOneof("value") != "trigger_value":
                self.widget_states[state.id] = state
        sent = dict(self.widget_states)
        sent.update({s.id: s for s in changes if s.WhichOneof("value") == "trigger_value"})
        message = BackMsg()
        message.rerun_script.query_string = ""
        message.rerun_script.page_script_hash = self.page_script_hash
        message.rerun_script.page_name = self.page_name
        message.rerun_script.widget_states.widgets.extend(sent.values())
        message.rerun_script.fragment_id = fragment_id
        await self.websocket.send(message.SerializeToString())
        result = await self._read_run()
        self._remember_widgets(result)
        await self._fetch_media(result)
        return result

    async def _fetch_media(self, result: RunResult) -> None:
        """GET the run's images not fetched before, as the browser does before it shows them."""
        urls = {image.url for element in result.elements.values()
                if element.WhichOneof("type") == "imgs" for image in element.imgs.imgs}
        new = sorted(url for url in urls - self.fetched_media if url.startswith("/media/"))
        replies = await asyncio.gather(*(http_request(self.host, self.port, "GET", url,
                                                      self._cookie_header()) for url in new))
        for url, (status, _, _) in zip(new, replies):
            if status != 200:
                result.exceptions.append(f"media {url} answered {status}")
        self.fetched_media.update(new)

    async def _receive(self) -> ForwardMsg:
        data = await asyncio.wait_for(self.websocket.recv(), self.receive_timeout)
        message = ForwardMsg()
        message.ParseFromString(data)
        return message

    async def _read_run(self) -> RunResult:
        """ForwardMsgs until `script_finished` ends the run (not a stop for `st.rerun()`)."""
        result = RunResult()
        while True:
            message = await self._receive()
            kind = message.WhichOneof("type")
            if kind == "new_session":  # every run starts with one, st.rerun() runs too
                self.session_id = message.new_session.initialize.session_id or self.session_id
                self._learn_pages(message.new_session)
                result = self._page_before(message.metadata.run.fragment_ids)
            elif kind == "navigation":  # a pages/ app: the page run and the app's pages
                self._learn_pages(message.navigation)
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                element = message.delta.new_element
                path = tuple(message.metadata.delta_path)
                result.elements[path] = element
                result.fragments[path] = message.delta.fragment_id
                if element.WhichOneof("type") == "exception":
                    result.exceptions.append(describe_exception(element.exception))
            elif kind == "page_not_found":
                result.page_not_found = message.page_not_found.page_name or self.page_name
            elif kind == "script_finished" and message.script_finished in FINAL_STATUSES:
                if message.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    result.exceptions.append("the page failed to compile")
                self.shown = result
                return result

    def _page_before(self, fragment_ids) -> RunResult:
        """Where a run starts drawing: a blank page, or for a fragment run the page as shown less
        what those fragments drew (they draw it again; the browser drops what they do not)."""
        if not fragment_ids:
            return RunResult()
        redrawn = set(fragment_ids)
        kept = [path for path, fragment in self.shown.fragments.items() if fragment not in redrawn]
        return RunResult({path: self.shown.elements[path] for path in kept},
                         {path: self.shown.fragments[path] for path in kept})

    def _learn_pages(self, message) -> None:
        """The page's script hash and the app's pages, from `new_session` or `navigation`.

        In a pages/ app (Streamlit >= 1.4x runs it through st.navigation) `new_session` names the
        main script; the `navigation` message that follows names the page really run.
        """
        if not message.app_pages:
            return
        self.page_script_hash = message.page_script_hash
        self.app_pages = list(message.app_pages)
        page = next((p for p in self.app_pages if p.page_script_hash == self.page_script_hash), None)
        if page is not None:
            self.page_name = page.url_pathname

    def _remember_widgets(self, result: RunResult) -> None:
        """Keep the values of the widgets this run drew, as the frontend does after each run."""
        kept = {}
        for widget in result.widgets():
            server_value = getattr(widget.proto, "set_value", False)
            state = None if server_value else self.widget_states.get(widget.id)
            kept[widget.id] = state or default_state(widget)
        self.widget_states = {key: state for key, state in kept.items() if state is not None}
        self.widget_ids = {widget.key: widget.id for widget in result.widgets() if widget.key}
        self.widget_fragments = {widget.id: result.fragments.get(path, "")
                                 for path, widget in result.widget_paths().items()}
        self.widget_forms = {widget.id: getattr(widget.proto, "form_id", "")
                             for widget in result.widgets()}
        self.form_submitters = {widget.id: getattr(widget.proto, "is_form_submitter", False)
                                for widget in result.widgets()}

    async def _change(self, key: str, **value) -> RunResult:
        """Give the widget with this user key a new value: one run, of its fragment if it has one.

        A widget inside an `st.form` runs nothing: as in the browser, its value waits in the form
        until a submit button of that form sends them all (`click`).
        """
        widget_id = self._widget_id(key)
        state = WidgetState(id=widget_id, **value)
        form_id = self.widget_forms.get(widget_id, "")
        if form_id and not self.form_submitters.get(widget_id):
            self.pending_forms.setdefault(form_id, {})[widget_id] = state
            return self.shown
        if form_id:  # a submit button: the form's values go with its click
            self.widget_states.update(self.pending_forms.pop(form_id, {}))
        return await self.rerun([state], self.widget_fragments.get(widget_id, ""))

    async def click(self, key: str) -> RunResult:
        """Press the button with this key (one run with its trigger value set; a form's submit
        button sends the values typed into the form with it)."""
        return await self._change(key, trigger_value=True)

    async def set_string(self, key: str, value: str) -> RunResult:
        """Type into a text input or choose a select box / radio option by its shown label."""
        return await self._change(key, string_value=value)

    async def set_int(self, key: str, value: int) -> RunResult:
        return await self._change(key, int_value=value)

    def _widget_id(self, key: str) -> str:
        """The id of the widget with this user key drawn by the last run."""
        if key not in self.widget_ids:
            raise ProtocolError(f"no widget with key {key!r} on the page")
        return self.widget_ids[key]

    async def upload(self, key: str, file_name: str, data: bytes, mime_type: str) -> FileURLs:
        """Upload one file for a file_uploader as the frontend does: ask for URLs, then PUT it."""
        request = BackMsg()
        request.file_urls_request.request_id = uuid.uuid4().hex
        request.file_urls_request.file_names.append(file_name)
        request.file_urls_request.session_id = self.session_id
        await self.websocket.send(request.SerializeToString())
        request_id = request.file_urls_request.request_id
        while True:
            message = await self._receive()
            if (message.WhichOneof("type") == "file_urls_response"
                    and message.file_urls_response.response_id == request_id):
                break
        if message.file_urls_response.error_msg or not message.file_urls_response.file_urls:
            raise ProtocolError(f"no upload URL: {message.file_urls_response.error_msg}")
        urls = message.file_urls_response.file_urls[0]
        content_type, body = multipart_body("file", file_name, data, mime_type)
        headers = {"Content-Type": content_type, "X-Xsrftoken": self.xsrf_token,
                   "Origin": f"http://{self.host}:{self.port}", **self._cookie_header()}
        status, _, answer = await http_request(self.host, self.port, "PUT",
                                               urlsplit(urls.upload_url).path or urls.upload_url,
                                               headers, body)
        if status not in (200, 204):
            raise ProtocolError(f"upload answered {status}: {answer[:200]!r}")
        return urls

    async def set_uploaded_file(self, key: str, file_name: str, size: int,
                                urls: FileURLs) -> RunResult:
        """Rerun with the file_uploader holding the uploaded file, as after a browser upload."""
        state = WidgetState(id=self._widget_id(key), file_uploader_state_value=FileUploaderState())
        info = state.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = file_name, size, urls.file_id
        info.file_urls.CopyFrom(urls)
        return await self.rerun([state])


def describe_exception(exception) -> str:
    """One line naming an exception element the app showed."""
    prefix = "warning: " if exception.is_warning else ""
    return f"{prefix}{exception.type}: {exception.message}".strip()
