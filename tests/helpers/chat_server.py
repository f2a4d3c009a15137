"""A local server that speaks the OpenAI chat completions protocol (POST /v1/chat/completions),
streamed (server-sent events) or not. The test decides what the "model" says with a function
of the request; the server records every request, so a test can see what was sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.helpers.local_server import JSONHandler, LocalServer

Reply = Callable[[dict[str, Any]], str]


def system_prompt(body: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


def last_user_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


class OpenAIChatServer(LocalServer):
    """`with OpenAIChatServer(reply) as server:`; `server.base_url` ends in /v1."""

    def __init__(
        self, reply: Reply, *, fail_with: int | None = None, delay: float = 0.0, pieces: int = 6
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(JSONHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if self.path != "/v1/chat/completions":
                    return self.send_json(404, {"error": {"message": "not found"}})
                if fail_with:
                    return self.send_json(
                        fail_with,
                        {"error": {"message": "model overloaded", "type": "server_error"}},
                    )
                time.sleep(delay)
                content = reply(body)
                if body.get("stream"):
                    return self._stream(body, content)
                self.send_json(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

            def _stream(self, body: dict[str, Any], content: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                size = max(1, len(content) // pieces)
                parts = [content[i : i + size] for i in range(0, len(content), size)]
                deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in parts]
                for number, delta in enumerate(deltas):
                    last = number == len(deltas) - 1
                    self._event(
                        {
                            "id": "chatcmpl-test",
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": delta,
                                    "finish_reason": "stop" if last else None,
                                }
                            ],
                        }
                    )
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _event(self, payload: dict[str, Any]) -> None:
                self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        super().__init__(Handler)
