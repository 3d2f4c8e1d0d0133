"""A loopback Slack: incoming-webhook posts and chat.postMessage, recorded.
``fail_with`` makes it answer an error status (an outage) until cleared;
``hold_next`` keeps the next request waiting (a send in flight) until released."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class FakeSlack:
    def __init__(self) -> None:
        self.posts: list[dict] = []  # accepted messages
        self.refused = 0  # attempts answered with an error
        self.fail_with: int | None = None
        self.held = 0  # requests waiting at a gate now
        self._gate: threading.Event | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def hold_next(self) -> threading.Event:
        """The next request waits (unanswered, unrecorded) until the returned event is set."""
        gate = threading.Event()
        with self._lock:
            self._gate = gate
        return gate

    def texts(self, containing: str = "") -> list[str]:
        with self._lock:
            return [p["text"] for p in self.posts if containing in p["text"]]

    def wait_for(self, containing: str, count: int = 1, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.texts(containing)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {count} post(s) containing {containing!r}; got {self.texts()}")


def _handler(slack: FakeSlack):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            if "json" in self.headers.get("content-type", ""):
                body = json.loads(raw or b"{}")
            else:
                body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            with slack._lock:
                gate, slack._gate = slack._gate, None
                slack.held += gate is not None
            if gate is not None:
                gate.wait(30)
                with slack._lock:
                    slack.held -= 1
            if slack.fail_with is not None:
                with slack._lock:
                    slack.refused += 1
                return self._answer(slack.fail_with, b"service unavailable", "text/plain")
            if isinstance(body.get("blocks"), str):
                body["blocks"] = json.loads(body["blocks"])
            with slack._lock:
                slack.posts.append({"path": self.path, **body})
            if self.path.startswith("/api/"):
                return self._answer(200, json.dumps({"ok": True, "ts": "1.0", "channel": "C1"}).encode(),
                                    "application/json")
            return self._answer(200, b"ok", "text/plain")

        def _answer(self, status: int, data: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
