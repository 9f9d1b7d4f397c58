/* streamcore demo chat page: one prompt, one streamed answer, rendered as markdown.
 *
 * Theory of operation
 * -------------------
 * Sending a prompt POSTs the whole conversation to /v1/streams and opens an
 * EventSource on the events URL it returns. Every SSE event carries an id; an
 * answer applies an event only if its id is greater than the last id it applied
 * (lastId) and then moves lastId forward. That one rule makes every way of
 * (re)connecting safe: the browser's own reconnection (it sends Last-Event-ID and
 * the server replays what was missed), and this page's fallback reconnection with
 * a fresh EventSource when the browser gives up (the server then replays from the
 * start and the ids already applied are skipped). So text is neither duplicated
 * nor lost across a dropped connection.
 *
 * Text deltas are appended to a string buffer and a render is scheduled with
 * requestAnimationFrame; a render already scheduled is not scheduled again, so the
 * markdown is parsed at most once per frame however many deltas arrive (and not
 * at all while the tab is hidden). A render parses the whole buffer with marked
 * and sanitizes the HTML with DOMPurify: the model's text is untrusted. Before a
 * render the page notes whether the reader was at the bottom of the conversation
 * and only then follows the new text down.
 *
 * An answer ends on the server's `end` event (the EventSource is closed there,
 * otherwise the browser would reconnect forever). A recovery `interrupted` event,
 * a provider error, or a connection that cannot be re-established leaves the
 * partial answer on screen with a notice saying what happened.
 *
 * window.__streamcore exposes a few hooks for tests/test_browser.py; the page does
 * not use them itself.
 */
"use strict";

(function () {
  // Fallback reconnection when the browser has given up on an EventSource
  // (readyState CLOSED): fresh connection after each delay, then give up.
  const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
  // "At the bottom" within this many pixels: sub-pixel layout never is exactly 0.
  const AT_BOTTOM_SLACK_PX = 24;
  const EVENT_TYPES = [
    "stream_started", "text_delta", "reasoning_delta", "usage", "finish",
    "provider_error", "retrying", "resuming", "stitched", "interrupted", "end",
  ];

  const log = document.getElementById("log");
  const form = document.getElementById("composer");
  const promptBox = document.getElementById("prompt");
  const sendButton = document.getElementById("send");
  const statusLine = document.getElementById("status");

  const conversation = []; // [{role, content}], sent whole with every prompt
  const token = takeToken();
  let current = null; // the Answer being streamed, or the last one

  // A server bound beyond loopback wants a bearer token. It can be given in the
  // URL fragment (http://host:8000/#token=...), which browsers never send, so it
  // stays out of server and proxy logs; it is then removed from the address bar.
  function takeToken() {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!match) return null;
    history.replaceState(null, "", location.pathname + location.search);
    return decodeURIComponent(match[1]);
  }

  function renderMarkdown(text) {
    return DOMPurify.sanitize(marked.parse(text, { gfm: true }));
  }

  function setStatus(text) {
    statusLine.textContent = text;
  }

  function isAtBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight <= AT_BOTTOM_SLACK_PX;
  }

  function addBubble(role) {
    const bubble = document.createElement("article");
    bubble.className = "msg " + role;
    const body = document.createElement("div");
    body.className = "body";
    bubble.appendChild(body);
    log.appendChild(bubble);
    return { bubble, body };
  }

  // Drop the last `count` code points (the server counts Python characters,
  // JavaScript strings count UTF-16 units).
  function dropCodePoints(text, count) {
    let end = text.length;
    for (let i = 0; i < count && end > 0; i++) {
      const low = text.charCodeAt(end - 1);
      end -= low >= 0xdc00 && low <= 0xdfff && end >= 2 ? 2 : 1;
    }
    return text.slice(0, end);
  }

  class Answer {
    constructor(eventsUrl) {
      const { bubble, body } = addBubble("assistant");
      bubble.classList.add("streaming");
      const typing = document.createElement("div");
      typing.className = "typing";
      typing.setAttribute("aria-label", "The assistant is typing");
      typing.append(document.createElement("span"), document.createElement("span"),
        document.createElement("span"));
      const notice = document.createElement("div");
      notice.className = "notice";
      notice.setAttribute("role", "alert");
      bubble.append(typing, notice);

      this.bubble = bubble;
      this.body = body;
      this.notice = notice;
      this.eventsUrl = eventsUrl;
      this.buffer = "";
      this.lastId = -1;
      this.source = null;
      this.framePending = false;
      this.done = false;
      this.endState = null;
      this.connectionLost = false;
      this.fallbackAttempts = 0;
      this.fallbackTimer = null;
      // Counters for the tests (and for curiosity in the console).
      this.stats = { deltas: 0, renders: 0, skipped: 0, connections: 0, losses: 0 };
      this.connect();
    }

    connect() {
      const url = new URL(this.eventsUrl, location.href);
      // EventSource cannot set headers: the token and, on the page's own
      // reconnections, the resume point go in the query (the server reads
      // last_event_id where no Last-Event-ID header is sent).
      if (token) url.searchParams.set("access_token", token);
      if (this.lastId >= 0) url.searchParams.set("last_event_id", String(this.lastId));
      const source = new EventSource(url.href);
      this.source = source;
      this.stats.connections++;
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (e) => this.receive(type, e));
      }
      source.onopen = () => {
        if (this.connectionLost) setStatus("reconnected, resuming…");
      };
      source.onerror = () => this.connectionError(source);
    }

    receive(type, e) {
      if (this.done) return;
      const id = Number.parseInt(e.lastEventId, 10);
      if (Number.isFinite(id)) {
        // `end` is idempotent and must never be lost to the rule, even if a
        // server sent it without an id of its own (lastEventId then repeats).
        if (id <= this.lastId && type !== "end") {
          this.stats.skipped++;
          return;
        }
        this.lastId = id;
      }
      let data;
      try {
        data = JSON.parse(e.data);
      } catch (err) {
        this.showNotice("The server sent an unreadable " + type + " event; the answer may be incomplete.");
        return;
      }
      if (this.connectionLost) {
        this.connectionLost = false;
        this.fallbackAttempts = 0;
        this.showNotice("");
        setStatus("streaming");
      }
      this.apply(type, data);
    }

    apply(type, data) {
      switch (type) {
        case "text_delta":
          if ((data.choice || 0) !== 0) return;
          this.buffer += data.text;
          this.stats.deltas++;
          this.schedule();
          return;
        case "stream_started":
          setStatus(data.model ? "streaming from " + data.model : "streaming");
          return;
        case "reasoning_delta":
          setStatus("thinking…");
          return;
        case "usage":
          this.usage = data;
          return;
        case "finish":
          if (data.reason === "length") {
            this.showNotice("The answer stopped at the model's length limit.");
          } else if (data.reason === "content_filter") {
            this.showNotice("The provider withheld the rest of the answer (content filter).");
          }
          return;
        case "provider_error":
          this.showNotice("The provider reported an error: " + (data.type || "error") + ": " +
            (data.message || "") + ". The text so far is kept.");
          return;
        case "retrying":
          // The new attempt replaces what the failed one delivered.
          this.buffer = dropCodePoints(this.buffer, data.discarded_chars || 0);
          this.schedule();
          setStatus("retrying (attempt " + data.attempt + "): " + data.reason);
          return;
        case "resuming":
          setStatus("resuming the answer after: " + data.reason);
          return;
        case "stitched":
          setStatus("resumed");
          return;
        case "interrupted":
          this.showNotice((data.marker || "[interrupted]") + " The partial answer above is kept.");
          return;
        case "end":
          this.finish(data.state || "completed");
          return;
        default:
          return;
      }
    }

    schedule() {
      if (this.framePending) return;
      this.framePending = true;
      requestAnimationFrame(() => this.render());
    }

    render() {
      this.framePending = false;
      const follow = isAtBottom();
      this.body.innerHTML = renderMarkdown(this.buffer);
      this.stats.renders++;
      if (follow) log.scrollTop = log.scrollHeight;
    }

    connectionError(source) {
      if (this.done || source !== this.source) return;
      if (!this.connectionLost) {
        this.connectionLost = true;
        this.stats.losses++;
        this.showNotice("Connection lost; reconnecting. The text so far is kept.");
      }
      setStatus("connection lost, reconnecting…");
      if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
      // The browser gave up (e.g. an error status while reconnecting): retry with a
      // fresh EventSource; the lastId rule skips whatever is replayed twice.
      if (this.fallbackAttempts >= RECONNECT_DELAYS_MS.length) {
        this.stop("The connection could not be re-established. The partial answer above is kept; send again to retry.");
        return;
      }
      const delay = RECONNECT_DELAYS_MS[this.fallbackAttempts++];
      this.fallbackTimer = setTimeout(() => {
        this.fallbackTimer = null;
        if (!this.done) this.connect();
      }, delay);
    }

    // Test hook: lose the connection the way a network drop does, from the
    // page's side (the server's replay and the lastId rule do the rest).
    dropConnection() {
      if (this.done) return false;
      this.source.close();
      this.connectionError(this.source);
      return true;
    }

    showNotice(text) {
      // A notice grows the log like text does: a reader at the bottom must see it.
      const follow = isAtBottom();
      this.notice.textContent = text;
      if (follow) log.scrollTop = log.scrollHeight;
    }

    finish(state) {
      this.endState = state;
      if (state !== "completed" && !this.notice.textContent) {
        this.showNotice("The answer ended early (" + state + "). The partial answer above is kept.");
      }
      this.stop(null);
      setStatus(state === "completed" ? "done" : "ended: " + state);
    }

    stop(message) {
      this.done = true;
      if (this.source) this.source.close();
      if (this.fallbackTimer !== null) clearTimeout(this.fallbackTimer);
      if (message) {
        this.showNotice(message);
        setStatus("interrupted");
      }
      this.bubble.classList.remove("streaming");
      this.render();
      if (this.buffer) conversation.push({ role: "assistant", content: this.buffer });
      sendButton.disabled = false;
      promptBox.focus();
    }
  }

  async function send(text) {
    conversation.push({ role: "user", content: text });
    addBubble("user").body.textContent = text;
    log.scrollTop = log.scrollHeight;
    sendButton.disabled = true;
    setStatus("sending…");
    let created;
    try {
      const response = await fetch("/v1/streams", {
        method: "POST",
        headers: Object.assign({ "content-type": "application/json" },
          token ? { authorization: "Bearer " + token } : {}),
        body: JSON.stringify({ messages: conversation }),
      });
      if (response.status !== 201) {
        const detail = (await response.text()).slice(0, 500);
        throw new Error("the server answered " + response.status + ": " + detail);
      }
      created = await response.json();
    } catch (err) {
      const { body } = addBubble("assistant");
      body.innerHTML = "";
      const notice = document.createElement("div");
      notice.className = "notice";
      notice.setAttribute("role", "alert");
      notice.textContent = "Could not start the answer: " + err.message;
      body.appendChild(notice);
      conversation.pop();
      sendButton.disabled = false;
      setStatus("error");
      return;
    }
    current = new Answer(created.events);
    setStatus("waiting for the first token…");
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = promptBox.value.trim();
    if (!text || sendButton.disabled) return;
    promptBox.value = "";
    send(text);
  });

  promptBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  window.__streamcore = {
    dropConnection: () => (current ? current.dropConnection() : false),
    answer: () => current && {
      text: current.buffer,
      lastId: current.lastId,
      done: current.done,
      endState: current.endState,
      notice: current.notice.textContent,
      renderedText: current.body.textContent,
      stats: Object.assign({}, current.stats),
    },
    renderedTextOf: (markdown) => {
      const el = document.createElement("div");
      el.innerHTML = renderMarkdown(markdown);
      return el.textContent;
    },
  };
})();
