"""A loopback HTTP server that answers like OpenAI (and Anthropic): JSON and
SSE shaped as the providers send them, for the real SDKs to talk to."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # A hundred callers may connect at once: the default listen backlog (5)
    # would drop or stall connections beyond it.
    request_queue_size = 256
    daemon_threads = True  # a handler still sleeping does not hold up shutdown


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.fail_with: int | None = None  # answer the next request with this status
        # What the next response reports (Chat Completions counting).
        self.usage = {"input": 1200, "cached": 1000, "output": 300, "reasoning": 0}
        self.service_tier = "default"
        self.served_model: str | None = None  # the model a chat response names (None: the one asked for)
        # Seconds each POST waits before it is answered (a model's latency), so
        # concurrent calls overlap as they do against a real provider. Each
        # request sleeps in its own handler thread.
        self.delay_s: float = 0.0
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- bodies ------------------------------------------------------------------
    def chat_usage(self) -> dict:
        u = self.usage
        return {
            "prompt_tokens": u["input"], "completion_tokens": u["output"], "total_tokens": u["input"] + u["output"],
            "prompt_tokens_details": {"cached_tokens": u["cached"], "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": u["reasoning"], "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }

    def chat(self, body: dict) -> dict:
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
            "model": self.served_model or body["model"],
            "service_tier": self.service_tier,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": self.chat_usage(),
        }

    def chat_chunks(self, body: dict):
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body["model"], "service_tier": self.service_tier}
        for i, word in enumerate(["Hello", " there", "."]):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}], "usage": None}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}
        if (body.get("stream_options") or {}).get("include_usage"):
            yield {**base, "choices": [], "usage": self.chat_usage()}

    def response(self, body: dict, status: str = "completed") -> dict:
        u = self.usage
        return {
            "id": "resp_1", "object": "response", "created_at": int(time.time()), "status": status,
            "model": body["model"], "service_tier": self.service_tier, "output": [
                {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Hello there.", "annotations": []}]}],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": u["input"], "output_tokens": u["output"],
                      "total_tokens": u["input"] + u["output"],
                      "input_tokens_details": {"cached_tokens": u["cached"], "cache_write_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": u["reasoning"]}},
        }

    def response_events(self, body: dict):
        created = {**self.response(body, "in_progress"), "usage": None, "output": []}
        yield {"type": "response.created", "sequence_number": 0, "response": created}
        for i, word in enumerate(["Hello", " there."]):
            yield {"type": "response.output_text.delta", "sequence_number": i + 1, "item_id": "msg_1",
                   "output_index": 0, "content_index": 0, "delta": word, "logprobs": []}
        yield {"type": "response.completed", "sequence_number": 3, "response": self.response(body)}

    def embeddings(self, body: dict) -> dict:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return {"object": "list", "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": [0.0, 0.1]} for i in range(len(inputs))],
                "usage": {"prompt_tokens": self.usage["input"], "total_tokens": self.usage["input"]}}

    def anthropic_message(self, body: dict) -> dict:
        u = self.usage
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": "Hello there."}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": u["input"] - u["cached"], "cache_read_input_tokens": u["cached"],
                          "cache_creation_input_tokens": 0, "output_tokens": u["output"]}}


def _handler(provider: FakeProvider):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: with Nagle's algorithm the
        # body waited for the client's delayed ACK, ~40 ms on every request.
        disable_nagle_algorithm = True

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            path = self.path.split("?")[0]
            provider.requests.append((path, body))
            if provider.delay_s:
                time.sleep(provider.delay_s)
            if provider.fail_with is not None:
                status, provider.fail_with = provider.fail_with, None
                return self._json(status, {"error": {"message": "injected failure", "type": "server_error",
                                                     "code": None, "param": None}})
            stream = bool(body.get("stream"))
            if path.endswith("/chat/completions"):
                return self._sse(provider.chat_chunks(body)) if stream else self._json(200, provider.chat(body))
            if path.endswith("/responses"):
                return self._sse(provider.response_events(body), named=True) if stream else \
                    self._json(200, provider.response(body))
            if path.endswith("/embeddings"):
                return self._json(200, provider.embeddings(body))
            if path.endswith("/messages"):
                return self._json(200, provider.anthropic_message(body))
            return self._json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _sse(self, events, named: bool = False) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            try:
                for event in events:
                    prefix = f"event: {event['type']}\n" if named else ""
                    self.wfile.write(f"{prefix}data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                if not named:
                    self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: an abandoned stream
            self.close_connection = True

    return Handler
