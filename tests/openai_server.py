"""A small but real OpenAI-compatible HTTP server (starlette + uvicorn) for the remote tests.

It listens on 127.0.0.1 on a free port, records every request it receives, and can be told how
to answer: normally (streaming or not), 401, 429 a few times then normally, 500 a few times
then normally, hang, drop the connection in the middle of a stream, or send malformed JSON.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    mode: str = "ok"  # ok | 401 | 429 | 500 | hang | drop | malformed
    failures: int = 1  # for 429 / 500: how many failing answers before answering normally
    reply: str = "ls -la"
    pieces: int = 3  # how many stream chunks the reply is cut into
    model: str = "test-model"
    retry_after_ms: int | None = 20


@dataclass
class OpenAIServer:
    behaviour: Behaviour = field(default_factory=Behaviour)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _failed: int = 0
    _stopping: bool = False
    _server: Any = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def set(self, **changes: Any) -> None:
        self.behaviour = Behaviour(**changes)
        self._failed = 0
        self.received.clear()

    @property
    def chat_requests(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("/chat/completions")]

    # -- the ASGI app ----------------------------------------------------------------------

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        async def models(request: Request) -> Response:
            self._record(request, "")
            return JSONResponse(
                {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
            )

        async def chat(request: Request) -> Any:
            body = (await request.body()).decode("utf-8", "replace")
            self._record(request, body)
            b = self.behaviour
            try:
                payload = json.loads(body)
            except ValueError:
                return JSONResponse({"error": {"message": "bad json"}}, status_code=400)
            streaming = bool(payload.get("stream"))
            if b.mode == "401":
                return JSONResponse(
                    {
                        "error": {
                            "message": "Incorrect API key provided",
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                        }
                    },
                    status_code=401,
                )
            if b.mode in ("429", "500") and self._failed < b.failures:
                self._failed += 1
                headers = {}
                if b.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(b.retry_after_ms)
                status = int(b.mode)
                return JSONResponse(
                    {"error": {"message": "slow down" if status == 429 else "boom", "type": "x"}},
                    status_code=status,
                    headers=headers,
                )
            if b.mode == "hang":
                deadline = time.monotonic() + 30
                while not self._stopping and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                return JSONResponse({"error": {"message": "too late"}}, status_code=504)
            if b.mode == "malformed":
                if streaming:

                    async def bad() -> Any:
                        yield b'data: {"id": "x", "choices": [{"delta": {"content": "he'
                        yield b"\n\n"
                        yield b"data: [DONE]\n\n"

                    return StreamingResponse(bad(), media_type="text/event-stream")
                return Response('{"id": "x", "choices": [', media_type="application/json")
            if not streaming:
                return JSONResponse(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": b.model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": b.reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
                    }
                )
            if b.mode == "drop":
                return _DroppingStream(self._chunks(b, finish=False)[:2])
            return StreamingResponse(_aiter(self._chunks(b)), media_type="text/event-stream")

        return Starlette(
            routes=[
                Route("/v1/models", models, methods=["GET"]),
                Route("/v1/chat/completions", chat, methods=["POST"]),
            ]
        )

    def _record(self, request: Any, body: str) -> None:
        self.received.append(
            Received(request.method, request.url.path, dict(request.headers), body)
        )

    def _chunks(self, b: Behaviour, finish: bool = True) -> list[bytes]:
        text = b.reply
        size = max(1, -(-len(text) // max(1, b.pieces)))
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        out = []
        for i, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            out.append(_sse(b.model, delta, None))
        if finish:
            out.append(_sse(b.model, {}, "stop"))
            out.append(b"data: [DONE]\n\n")
        return out

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        import uvicorn

        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=0,
            log_level="critical",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test OpenAI server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


def _sse(model: str, delta: dict[str, Any], finish: str | None) -> bytes:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _aiter(items: list[bytes]) -> Any:
    for item in items:
        yield item
        await asyncio.sleep(0.01)


class _DroppingStream:
    """A raw ASGI response: headers and a few SSE chunks, then the connection is cut."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0.01)
        # Ending the app without the final body message makes uvicorn abort the connection
        # mid-response (incomplete chunked body), just like a crashed or killed server.
        raise ConnectionAbortedError("dropping the connection on purpose")
