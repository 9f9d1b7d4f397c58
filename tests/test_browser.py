"""The demo chat page of ``streamcore serve`` in headless Chromium, against the real relay.

Chromium is driven over the DevTools protocol (CDP) by a small client written
here on trio + wsproto, both already dependencies, so the relay and the browser
are driven from the same trio run: no thread, no second event loop, no new
package. (Playwright for Python would add a dev dependency of 165 MB installed,
and its API runs on asyncio or on a greenlet loop, so the relay would need a
thread of its own.)

Between the browser and the relay sits :class:`_Cable`, a TCP forwarder whose
``cut()`` closes every open connection the way a network failure does: the
page's EventSource then reconnects by itself with ``Last-Event-ID``.

Set ``STREAMCORE_SCREENSHOT=docs/serve.png`` to refresh the README's screenshot.
The whole module is skipped when no ``chromium`` is on PATH (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import wsproto
import wsproto.events as ws

from streamcore.adapters.emulator.text import answer_for
from streamcore.adapters.serve import ServeConfig, open_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)"
    ),
]

# A guard against a hung browser, not a timing assertion: a healthy test ends in seconds.
STEP_SECONDS = 60.0
PROMPT = "Explain server-sent events and reconnection"
# Slow enough that the answer takes many frames and a drop lands mid-answer.
EMULATOR_FAULTS = "pace=0.004"


# --------------------------------------------------------------------------- CDP client


class CDPError(AssertionError):
    """The browser answered a command with an error, or a page script threw."""


class _CDP:
    """One DevTools WebSocket; commands are matched to replies by id.

    Events the test subscribed to (``listen``) go to a channel; the others are dropped.
    """

    def __init__(self, stream: trio.SocketStream, conn: wsproto.WSConnection) -> None:
        self._stream = stream
        self._conn = conn
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._waiters: dict[int, trio.Event] = {}
        self._listeners: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._send_lock = trio.Lock()

    @classmethod
    async def connect(cls, url: str) -> _CDP:
        match = re.fullmatch(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert match, f"unexpected DevTools URL {url!r}"
        host, port, target = match[1], int(match[2]), match[3]
        stream = await trio.open_tcp_stream(host, port)
        conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        await stream.send_all(conn.send(ws.Request(host=f"{host}:{port}", target=target)))
        while True:
            data = await stream.receive_some(65536)
            assert data, "DevTools closed the connection during the handshake"
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, ws.AcceptConnection):
                    return cls(stream, conn)
                raise AssertionError(f"DevTools refused the WebSocket: {event!r}")

    async def read_forever(self) -> None:
        parts: list[str] = []
        while data := await self._stream.receive_some(1 << 20):
            self._conn.receive_data(data)
            for event in self._conn.events():
                if isinstance(event, ws.TextMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        self._dispatch(json.loads("".join(parts)))
                        parts.clear()
                elif isinstance(event, ws.Ping):
                    async with self._send_lock:
                        await self._stream.send_all(self._conn.send(event.response()))
                elif isinstance(event, ws.CloseConnection):
                    return

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            self._replies[message["id"]] = message
            self._waiters.pop(message["id"]).set()
        elif (channel := self._listeners.get(message.get("method", ""))) is not None:
            channel.send_nowait(message["params"])

    def listen(self, method: str) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](100)
        self._listeners[method] = send
        return receive

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        command_id = self._next_id
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        done = self._waiters[command_id] = trio.Event()
        async with self._send_lock:
            await self._stream.send_all(self._conn.send(ws.TextMessage(json.dumps(message))))
        with trio.fail_after(STEP_SECONDS):
            await done.wait()
        reply = self._replies.pop(command_id)
        if "error" in reply:
            raise CDPError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result


class _Tab:
    """One page of the browser, with the few actions the tests need."""

    def __init__(self, cdp: _CDP, session: str) -> None:
        self.cdp = cdp
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.cdp.send(method, params, self.session)

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page, awaited if it is a promise."""
        reply = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"page script threw: {text}")
        return reply["result"].get("value")

    async def until(self, condition: str) -> Any:
        """Wait (one check per animation frame) until ``condition`` is truthy; return it."""
        return await self.evaluate(
            "new Promise((resolve) => { const tick = () => { const v = (" + condition + ");"
            " if (v) resolve(v); else requestAnimationFrame(tick); }; tick(); })"
        )

    async def open(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.until("document.readyState === 'complete' && window.__streamcore")

    async def ask(self, prompt: str) -> None:
        """Type ``prompt`` into the box and press Enter, as a person would."""
        await self.evaluate("document.getElementById('prompt').focus()")
        await self.send("Input.insertText", {"text": prompt})
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        await self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **key})
        await self.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})

    async def answer(self) -> dict[str, Any]:
        value: dict[str, Any] = await self.evaluate("window.__streamcore.answer()")
        return value

    async def finished_answer(self) -> dict[str, Any]:
        value: dict[str, Any] = await self.until(
            "window.__streamcore.answer() && window.__streamcore.answer().done"
            " && window.__streamcore.answer()"
        )
        return value

    async def rendered_text_of(self, markdown: str) -> str:
        text: str = await self.evaluate(
            f"window.__streamcore.renderedTextOf({json.dumps(markdown)})"
        )
        return text

    async def screenshot(self) -> bytes:
        reply = await self.send("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(reply["data"])


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some(65536):
        pass


@contextlib.asynccontextmanager
async def _chromium(profile: Path) -> AsyncIterator[_Tab]:
    """A headless Chromium with one blank tab; killed on exit."""
    assert CHROMIUM is not None
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # CI containers run as root
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--force-device-scale-factor=1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    process = await trio.lowlevel.open_process(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        seen = b""
        with trio.fail_after(STEP_SECONDS):
            while (found := re.search(rb"DevTools listening on (ws://\S+)", seen)) is None:
                data = await process.stderr.receive_some(65536)
                assert data, f"chromium exited before listening: {seen.decode(errors='replace')}"
                seen = seen[-4096:] + data
        cdp = await _CDP.connect(found[1].decode())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, process.stderr)
            nursery.start_soon(cdp.read_forever)
            target = await cdp.send("Target.createTarget", {"url": "about:blank"})
            attached = await cdp.send(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            tab = _Tab(cdp, attached["sessionId"])
            await tab.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": 900, "height": 700, "deviceScaleFactor": 1, "mobile": False},
            )
            yield tab
            nursery.cancel_scope.cancel()
    finally:
        process.kill()
        with trio.move_on_after(STEP_SECONDS):
            await process.wait()


# --------------------------------------------------------------------------- network


class _Cable:
    """A TCP forwarder to the relay; ``cut()`` closes every open connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self.heads: list[bytes] = []  # the first bytes of each connection, in order
        self._open: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._forward, listeners)

    def cut(self) -> int:
        """Close the open connections mid-stream; how many there were."""
        count = len(self._open)
        for scope in self._open:
            scope.cancel()
        self.cuts += count
        return count

    async def _forward(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._open.add(scope)
            try:
                async with client:
                    upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
            finally:
                self._open.discard(scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        first = True
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                if first and sink.socket.getpeername()[1] == self.target_port:
                    self.heads.append(data[:2048])
                first = False
                await sink.send_all(data)
        both.cancel()  # the relay closes after each response; so does the browser side


@pytest.fixture
async def relay() -> AsyncIterator[int]:
    """The real ``streamcore serve`` relay on the in-process emulator; yields its port."""
    config = ServeConfig(port=0, retry_ms=100)
    async with open_server(config, emulator_faults=EMULATOR_FAULTS) as server:
        yield server.port


@pytest.fixture
async def cable(relay: int, nursery: trio.Nursery) -> _Cable:
    cable = _Cable(relay)
    await nursery.start(cable.run)
    return cable


@pytest.fixture
async def tab(tmp_path: Path) -> AsyncIterator[_Tab]:
    async with _chromium(tmp_path / "profile") as tab:
        yield tab


def _url(cable: _Cable) -> str:
    return f"http://127.0.0.1:{cable.port}/"


# --------------------------------------------------------------------------- tests

# Sample the rendered answer once per animation frame until the stream ends: the
# distinct text lengths seen, and whether the typing indicator showed meanwhile.
_WATCH_ANSWER = """
new Promise((resolve) => {
  const lengths = [];
  let typingSeen = false;
  const tick = () => {
    const bubble = document.querySelector(".msg.assistant");
    const answer = window.__streamcore.answer();
    if (bubble && answer) {
      const n = answer.renderedText.length;
      if (lengths[lengths.length - 1] !== n) lengths.push(n);
      const dots = bubble.querySelector(".typing");
      if (!answer.done && getComputedStyle(dots).display !== "none") typingSeen = true;
      if (answer.done) {
        resolve({ lengths, typingSeen,
                  typingAfter: getComputedStyle(dots).display !== "none" });
        return;
      }
    }
    requestAnimationFrame(tick);
  };
  tick();
})
"""


async def test_answer_streams_in_steps_and_ends_as_the_rendered_markdown(
    cable: _Cable, tab: _Tab, tmp_path: Path
) -> None:
    await tab.open(_url(cable))
    await tab.ask(PROMPT)
    watched = await tab.evaluate(_WATCH_ANSWER)
    answer = await tab.finished_answer()

    expected = answer_for(PROMPT)
    assert answer["endState"] == "completed"
    assert answer["text"] == expected
    assert answer["renderedText"] == await tab.rendered_text_of(expected)
    assert len(watched["lengths"]) >= 5, watched["lengths"]
    assert watched["lengths"] == sorted(watched["lengths"])
    assert watched["typingSeen"] and not watched["typingAfter"]
    assert await tab.evaluate("document.querySelectorAll('.msg.assistant pre code').length") >= 1
    assert await tab.evaluate("document.querySelectorAll('.msg.assistant ul li').length") >= 2

    png = await tab.screenshot()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    target = os.environ.get("STREAMCORE_SCREENSHOT")
    (Path(target) if target else tmp_path / "serve.png").write_bytes(png)


async def test_cut_connection_resumes_to_the_complete_text_without_duplicates(
    cable: _Cable, tab: _Tab
) -> None:
    await tab.open(_url(cable))
    await tab.ask(PROMPT)
    await tab.until("(window.__streamcore.answer() || {text: ''}).text.length > 150")
    assert cable.cut() >= 1
    lost = await tab.until(
        "(window.__streamcore.answer() || {}).stats.losses > 0 && window.__streamcore.answer()"
    )
    assert "Connection lost" in lost["notice"]
    assert lost["text"] and answer_for(PROMPT).startswith(lost["text"])

    answer = await tab.finished_answer()
    assert answer["text"] == answer_for(PROMPT)
    assert answer["endState"] == "completed"
    assert answer["notice"] == ""  # the lost-connection notice goes once text flows again
    assert answer["stats"]["connections"] == 1  # the browser reconnected by itself...
    resumed = [h for h in cable.heads if b"/events" in h.split(b"\r\n", 1)[0]][-1]
    assert re.search(rb"(?im)^last-event-id: *[1-9][0-9]*\r$", resumed), resumed  # ...from its id


async def test_page_side_drop_reopens_from_the_last_event_id(cable: _Cable, tab: _Tab) -> None:
    await tab.open(_url(cable))
    await tab.ask(PROMPT)
    await tab.until("(window.__streamcore.answer() || {text: ''}).text.length > 150")
    assert await tab.evaluate("window.__streamcore.dropConnection()") is True

    answer = await tab.finished_answer()
    assert answer["text"] == answer_for(PROMPT)
    assert answer["stats"]["connections"] == 2
    assert answer["stats"]["losses"] == 1


def _sse(events: list[tuple[str, dict[str, object]]], *, retry_ms: int | None = None) -> str:
    head = f"retry: {retry_ms}\n\n" if retry_ms is not None else ""
    return head + "".join(
        f"id: {n}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
        for n, (kind, data) in enumerate(events, start=1)
    )


def _deltas(*texts: str) -> list[tuple[str, dict[str, object]]]:
    return [("text_delta", {"type": "text_delta", "text": t, "choice": 0}) for t in texts]


async def _serve_events_from_test(tab: _Tab, body: str) -> None:
    """Answer the page's next events request with ``body`` (the POST still hits the relay)."""
    paused = tab.cdp.listen("Fetch.requestPaused")
    await tab.send("Fetch.enable", {"patterns": [{"urlPattern": "*/events*"}]})
    await _fulfil_one(tab, paused, body)


async def _fulfil_one(
    tab: _Tab, paused: trio.MemoryReceiveChannel[dict[str, Any]], body: str
) -> dict[str, Any]:
    """Answer the next paused request with ``body``; return that request."""
    with trio.fail_after(STEP_SECONDS):
        request = await paused.receive()
    await tab.send(
        "Fetch.fulfillRequest",
        {
            "requestId": request["requestId"],
            "responseCode": 200,
            "responseHeaders": [{"name": "content-type", "value": "text/event-stream"}],
            "body": base64.b64encode(body.encode()).decode(),
        },
    )
    return request


async def test_a_burst_of_deltas_is_rendered_once_per_frame_not_per_delta(
    cable: _Cable, tab: _Tab
) -> None:
    # 300 deltas in one response body arrive within a frame or two; a page that
    # re-rendered per delta would parse the markdown 300 times.
    pieces = [f"- item {i} of a long list\n" for i in range(300)]
    body = _sse(
        [("text_delta", {"type": "text_delta", "text": p, "choice": 0}) for p in pieces]
        + [("end", {"state": "completed", "text_chars": len("".join(pieces))})]
    )
    await tab.open(_url(cable))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_events_from_test, tab, body)
        await tab.ask(PROMPT)
    answer = await tab.finished_answer()

    assert answer["text"] == "".join(pieces)
    assert answer["stats"]["deltas"] == 300
    assert answer["stats"]["renders"] <= 30, answer["stats"]
    assert await tab.evaluate("document.querySelectorAll('.msg.assistant li').length") == 300


async def test_events_replayed_again_after_a_reconnection_are_applied_once(
    cable: _Cable, tab: _Tab
) -> None:
    # A first response that breaks off after three events, then a server that
    # replays from the start instead of from Last-Event-ID: ids already applied
    # must be skipped, or the answer would read "Server-sent Server-sent ...".
    pieces = ("Server-sent ", "events ", "resume ", "by ", "id.")
    everything = [*_deltas(*pieces), ("end", {"state": "completed", "text_chars": 27})]
    paused = tab.cdp.listen("Fetch.requestPaused")
    await tab.send("Fetch.enable", {"patterns": [{"urlPattern": "*/events*"}]})
    await tab.open(_url(cable))
    await tab.ask(PROMPT)
    await _fulfil_one(tab, paused, _sse(everything[:3], retry_ms=50))
    again = await _fulfil_one(tab, paused, _sse(everything))
    answer = await tab.finished_answer()

    assert again["request"]["url"].endswith("/events")  # the browser's own reconnection
    assert answer["text"] == "".join(pieces)
    assert answer["stats"]["skipped"] == 3


_GAP_TO_BOTTOM = (
    "(() => { const log = document.getElementById('log');"
    " return log.scrollHeight - log.scrollTop - log.clientHeight; })()"
)


async def test_new_text_scrolls_into_view_only_for_a_reader_at_the_bottom(
    cable: _Cable, tab: _Tab
) -> None:
    first = [f"- line {i}, long enough to need scrolling\n" for i in range(1, 61)]
    second = [f"- line {i}, more of the same\n" for i in range(61, 121)]
    events = [*_deltas(*first, *second), ("end", {"state": "completed", "text_chars": 0})]
    paused = tab.cdp.listen("Fetch.requestPaused")
    await tab.send("Fetch.enable", {"patterns": [{"urlPattern": "*/events*"}]})
    await tab.open(_url(cable))
    await tab.ask(PROMPT)

    # The reader is at the bottom: the page follows the text down, and the notice
    # that the first response broke off (it ends after 60 events) is in view too.
    await _fulfil_one(tab, paused, _sse(events[:60], retry_ms=50))
    await tab.until("window.__streamcore.answer().renderedText.includes('line 60,')")
    await tab.until("document.querySelector('.msg.assistant .notice').textContent !== ''")
    assert await tab.evaluate(_GAP_TO_BOTTOM) <= 24
    assert await tab.evaluate("document.getElementById('log').scrollTop") > 500

    # The reader scrolled up to read: more text must not pull them down.
    await tab.evaluate("document.getElementById('log').scrollTop = 0")
    await _fulfil_one(tab, paused, _sse(events))
    answer = await tab.finished_answer()
    assert "line 120," in answer["renderedText"]
    assert await tab.evaluate("document.getElementById('log').scrollTop") == 0


async def test_html_in_model_text_is_sanitized_not_executed(cable: _Cable, tab: _Tab) -> None:
    # The emulator only says harmless things; a stand-in events response says the
    # hostile ones, split across deltas as a model would stream them.
    hostile = (
        "Here you go:\n\n<scr",
        "ipt>window.__pwned = 'script'</script>",
        "<img src=x onerror=\"window.__pwned = 'onerror'\">",
        "\n\n[link](javascript:window.__pwned='href') and **bold**.",
    )
    body = _sse(
        [("stream_started", {"type": "stream_started", "response_id": "r1", "model": "m"})]
        + [("text_delta", {"type": "text_delta", "text": t, "choice": 0}) for t in hostile]
        + [("end", {"state": "completed", "text_chars": len("".join(hostile))})]
    )
    await tab.open(_url(cable))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_events_from_test, tab, body)
        await tab.ask(PROMPT)
    answer = await tab.finished_answer()
    await tab.evaluate("document.querySelector('.msg.assistant a').click()")
    await tab.until("document.querySelector('.msg.assistant img')")

    assert answer["text"] == "".join(hostile)
    assert await tab.evaluate("document.querySelector('.msg.assistant strong').textContent") == (
        "bold"
    )
    assert await tab.evaluate("document.querySelectorAll('.msg.assistant script').length") == 0
    assert await tab.evaluate("document.querySelector('.msg.assistant img').outerHTML") == (
        '<img src="x">'
    )
    assert await tab.evaluate("window.__pwned === undefined") is True


async def test_interrupted_answer_keeps_the_partial_text_with_a_notice(
    cable: _Cable, tab: _Tab
) -> None:
    partial = "Reconnection in SSE works like this:\n\n- the client remembers the last id"
    marker = "[answer interrupted: the connection to the provider broke]"
    body = _sse(
        [
            ("text_delta", {"type": "text_delta", "text": partial[:20], "choice": 0}),
            ("text_delta", {"type": "text_delta", "text": partial[20:], "choice": 0}),
            (
                "interrupted",
                {"type": "interrupted", "marker": marker, "reason": "connection broke"},
            ),
            ("end", {"state": "interrupted", "text_chars": len(partial)}),
        ]
    )
    await tab.open(_url(cable))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_events_from_test, tab, body)
        await tab.ask(PROMPT)
    answer = await tab.finished_answer()

    assert answer["text"] == partial
    assert answer["endState"] == "interrupted"
    assert marker in answer["notice"] and "partial answer" in answer["notice"]
    assert await tab.evaluate("document.querySelector('.msg.assistant li').textContent") == (
        "the client remembers the last id"
    )
    assert await tab.evaluate("document.getElementById('send').disabled") is False


async def test_token_from_the_url_fragment_authorizes_and_leaves_the_address_bar(
    tab: _Tab, nursery: trio.Nursery
) -> None:
    config = ServeConfig(port=0, retry_ms=100, token="tok-3f9a1c")
    async with open_server(config) as server:
        cable = _Cable(server.port)
        await nursery.start(cable.run)
        await tab.open(_url(cable) + "#token=tok-3f9a1c")
        await tab.ask(PROMPT)
        answer = await tab.finished_answer()

    assert answer["text"] == answer_for(PROMPT)
    assert await tab.evaluate("location.href") == _url(cable)
    stream_requests = [h for h in cable.heads if b"/v1/streams" in h.split(b"\r\n", 1)[0]]
    assert len(stream_requests) == 2  # the POST and the events request, both authorized
    assert all(b"tok-3f9a1c" in h for h in stream_requests)
    page_request = next(h for h in cable.heads if h.startswith(b"GET / "))
    assert b"tok-3f9a1c" not in page_request  # a fragment never leaves the browser
