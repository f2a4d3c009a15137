"""A local server that speaks the OpenAI embeddings protocol (POST /v1/embeddings).

Vectors are hashed bags of words, so texts sharing words land close together: enough for
search to behave like search, with no model. It records every request it gets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from typing import Any

from tests.helpers.local_server import JSONHandler, LocalServer

DIMENSIONS = 1024


def bag_of_words_vector(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        slot = int.from_bytes(hashlib.sha1(word.encode()).digest()[:4], "big") % DIMENSIONS
        vector[slot] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class OpenAIEmbeddingsServer(LocalServer):
    """Start with `with OpenAIEmbeddingsServer() as server:`; `server.base_url` ends in /v1."""

    def __init__(self, fail_with: int | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_with = fail_with
        outer = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                if self.path != "/v1/embeddings":
                    return self.send_json(404, {"error": {"message": "not found"}})
                if outer.fail_with:
                    return self.send_json(
                        outer.fail_with,
                        {"error": {"message": "server says no", "type": "server_error"}},
                    )
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = []
                for position, text in enumerate(inputs):
                    vector = bag_of_words_vector(str(text))
                    if body.get("encoding_format") == "base64":
                        encoded: Any = base64.b64encode(
                            struct.pack(f"<{len(vector)}f", *vector)
                        ).decode()
                    else:
                        encoded = vector
                    data.append({"object": "embedding", "index": position, "embedding": encoded})
                self.send_json(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

        super().__init__(Handler)
