"""A local OpenAI-compatible HTTP API over the model pool (starlette).

`/v1/models`, `/v1/chat/completions` and `/v1/completions`, streaming (server-sent events) and
not. Chat messages are rendered with the model's own chat template, completions pass the prompt
through untouched: callers control the prompt, as with any OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

from shellfish.errors import ModelNotFound, PromptTooLong, ShellfishError, UsageError
from shellfish.events import Done, Error, Event, Token

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from shellfish.config import Settings
    from shellfish.engine.base import GenerationConfig
    from shellfish.paths import Paths
    from shellfish.store.pool import ModelPool

MAX_BODY_BYTES = 4 * 1024 * 1024
_END = object()


class Backend:
    """What the endpoint needs: model names, and a stream of events for a prompt."""

    def __init__(self, pool: ModelPool, settings: Settings, paths: Paths) -> None:
        self.pool = pool
        self.settings = settings
        self.paths = paths

    def models(self) -> list[str]:
        names = {m["name"] for m in self.pool.loaded()}
        try:
            from shellfish.store.store import Store

            names |= {m.name for m in Store(self.paths).installed()}
        except ImportError:  # pragma: no cover - the store ships with shellfish
            pass
        return sorted(names)

    def resolve(self, model: str | None) -> str:
        """The installed model for an OpenAI `model` field (empty or "shellfish": routed)."""
        from shellfish.request import TaskRequest
        from shellfish.tasks import resolve_model_name

        wanted = None if not model or model == "shellfish" else model
        if wanted is not None and self.pool.is_loaded(wanted):
            return wanted
        return resolve_model_name(TaskRequest("chat", "", model=wanted), self.settings, self.paths)

    def prepare(
        self, model: str, prompt: str | list[dict[str, str]], overrides: dict[str, Any]
    ) -> tuple[str, GenerationConfig]:
        """The prompt as text and its generation config, checked against the model's context.

        A prompt longer than the context raises `PromptTooLong` (a 400, before any answer
        starts); `max_tokens` is capped at the context length, so one request cannot hold the
        model for minutes on tokens it could never produce (the engines cap further by the
        room the prompt leaves, per family).
        """
        runner = self.pool.get(model)
        if not isinstance(prompt, str):
            prompt = render_messages(runner, prompt)
        config = _config(runner.info.defaults, overrides)
        context = runner.info.context_length
        if context > 0:
            used = runner.count_tokens(prompt)
            # a causal model's answer shares the context with the prompt: keep room for one token
            readable = context - 1 if runner.info.family == "causal" else context
            if used > readable:
                raise PromptTooLong(
                    f"the prompt is {used} tokens but {model} reads at most {readable}",
                    hint="shorten the prompt or pick a model with a longer context",
                )
            if config.max_new_tokens > context:
                config = config.merged(max_new_tokens=context)
        return prompt, config

    def generate(
        self, model: str, prompt: str, config: GenerationConfig, cancel: threading.Event
    ) -> Iterator[Event]:
        return self.pool.get(model).generate(prompt, config, cancel=cancel)


def render_messages(runner: Any, messages: list[dict[str, str]]) -> str:
    """Chat messages as the model's prompt (its chat template; a plain transcript for T5s)."""
    template = runner.info.template
    if template not in ("flan", "plain"):
        try:
            from shellfish.engine.templates import render_chat
        except ImportError:
            pass
        else:
            tokenizer = getattr(runner, "tokenizer", None)
            return str(render_chat(template, messages, tokenizer=tokenizer))
    lines = [
        m["content"] if m["role"] == "user" else f"{m['role']}: {m['content']}" for m in messages
    ]
    return "\n".join(lines)


def _config(base: GenerationConfig, overrides: dict[str, Any]) -> GenerationConfig:
    try:
        config = base.merged(**overrides)
        config.validate()
    except TypeError as exc:
        raise UsageError(f"bad generation parameters: {exc}") from exc
    return config


# -- request parsing ------------------------------------------------------------------------------


def _generation_overrides(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    checks: list[tuple[str, Any, Callable[[Any], bool], str]] = [
        (
            "max_new_tokens",
            max_tokens,
            lambda v: isinstance(v, int) and v >= 1,
            "max_tokens must be a positive integer",
        ),
        (
            "temperature",
            body.get("temperature"),
            lambda v: isinstance(v, (int, float)) and 0 <= v <= 2,
            "temperature must be in [0, 2]",
        ),
        (
            "top_p",
            body.get("top_p"),
            lambda v: isinstance(v, (int, float)) and 0 < v <= 1,
            "top_p must be in (0, 1]",
        ),
        (
            "n",
            body.get("n"),
            lambda v: isinstance(v, int) and 1 <= v <= 8,
            "n must be an integer from 1 to 8",
        ),
        ("seed", body.get("seed"), lambda v: isinstance(v, int), "seed must be an integer"),
    ]
    for key, value, ok, message in checks:
        if value is None:
            continue
        if isinstance(value, bool) or not ok(value):
            raise UsageError(message)
        out[key] = value
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
            raise UsageError("stop must be a string or a list of up to 4 strings")
        out["stop"] = tuple(stop)
    return out


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise UsageError("messages must be a non-empty list")
    out = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
            "developer",
        ):
            raise UsageError("each message needs a role: system, user or assistant")
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        if not isinstance(content, str):
            raise UsageError("message content must be a string")
        role = "system" if message["role"] == "developer" else message["role"]
        out.append({"role": role, "content": content})
    return out


# -- the app --------------------------------------------------------------------------------------


def create_app(
    backend: Backend,
    *,
    token: str | None = None,
    hosts: Collection[str] | None = (),
    origins: Collection[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The endpoint's ASGI app.

    Without a token anyone who can open the port may use it, so the app also refuses what a web
    page could send it: a `Host` header that is neither loopback nor one of `hosts` (DNS
    rebinding; `hosts=None` accepts any, for a wildcard bind the user opted into), a browser
    `Origin` not in `origins` (the allowed ones also get CORS headers), and a POST body that is
    not declared `application/json` (HTML forms and `no-cors` fetches cannot declare it).
    Bodies over `max_body_bytes` are refused without being read past the limit.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from shellfish.serve.server import host_allowed

    allowed_origins = frozenset(origins)

    def error(
        status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
    ) -> Response:
        return JSONResponse(
            {"error": {"message": message, "type": kind, "param": None, "code": code}},
            status_code=status,
        )

    def refused(request: Request) -> Response | None:
        """An error response for a request this server must not answer, else None."""
        host = request.headers.get("host", "")
        if hosts is not None and not host_allowed(host, hosts):
            return error(
                403,
                f"Host {host!r} is not this server's name (only loopback names are accepted)",
                "permission_error",
            )
        origin = request.headers.get("origin")
        if origin is not None and origin not in allowed_origins:
            return error(
                403,
                f"requests from web pages are refused (Origin {origin!r})",
                "permission_error",
                code="origin_not_allowed",
            )
        if not authorized(request):
            return error(401, "invalid or missing bearer token", "authentication_error")
        return None

    def authorized(request: Request) -> bool:
        if not token:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        # Bytes: compare_digest refuses non-ASCII str. Headers arrive decoded as latin-1, so
        # encoding back gives the raw bytes a client sent (a UTF-8 token matches).
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("latin-1"), token.encode("utf-8")
        )

    async def read_body(request: Request) -> dict[str, Any]:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise _HTTPError(415, "the request body must be JSON (Content-Type: application/json)")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise _HTTPError(413, f"request body is larger than {max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():  # stop at the limit: never hold a huge body
            size += len(chunk)
            if size > max_body_bytes:
                raise _HTTPError(413, f"request body is larger than {max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            # Bytes that are not UTF-8 become U+FFFD (as on every other path).
            body = json.loads(b"".join(chunks).decode("utf-8", errors="replace"))
            # a lone surrogate escape parses but cannot become UTF-8 for the tokenizer
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except RecursionError as exc:
            raise _HTTPError(400, "request body is nested too deeply") from exc
        except UnicodeEncodeError as exc:
            raise _HTTPError(400, "request body holds a lone UTF-16 surrogate") from exc
        except ValueError as exc:
            raise _HTTPError(400, f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _HTTPError(400, "request body must be a JSON object")
        return body

    async def models(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        names = await asyncio.to_thread(backend.models)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": 0, "owned_by": "shellfish"}
                    for name in names
                ],
            }
        )

    async def completion(request: Request, chat: bool) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        try:
            body = await read_body(request)
            overrides = _generation_overrides(body)
            if chat:
                wanted: str | list[dict[str, str]] = _messages(body)
            else:
                wanted = body.get("prompt")  # type: ignore[assignment]
                if isinstance(wanted, list) and len(wanted) == 1 and isinstance(wanted[0], str):
                    wanted = wanted[0]
                if not isinstance(wanted, str):
                    raise UsageError("prompt must be a string")
            model_field = body.get("model")
            if model_field is not None and not isinstance(model_field, str):
                raise UsageError("model must be a string")
            model = await asyncio.to_thread(backend.resolve, model_field)
            prompt, config = await asyncio.to_thread(backend.prepare, model, wanted, overrides)
        except _HTTPError as exc:
            return error(exc.status, exc.message)
        except ModelNotFound as exc:
            return error(404, str(exc), code="model_not_found")
        except ShellfishError as exc:
            return error(400, str(exc))
        reply = _Reply(chat=chat, model=model)
        cancel = threading.Event()

        def events() -> Iterator[Event]:
            return backend.generate(model, prompt, config, cancel)

        if body.get("stream"):
            # Starlette cancels the response when the client disconnects; _pump then sets
            # `cancel` and the runner stops at its next step.
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                reply.sse(_pump(events, cancel), include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        try:
            done = await _until_disconnect(
                request.receive, asyncio.to_thread(_collect, events), cancel
            )
        except ModelNotFound as exc:
            return error(404, str(exc), code="model_not_found")
        except (UsageError, PromptTooLong) as exc:
            return error(400, str(exc))
        except ShellfishError as exc:
            return error(500, str(exc), "server_error")
        return JSONResponse(reply.full(done))

    async def chat_completions(request: Request) -> Response:
        return await completion(request, chat=True)

    async def completions(request: Request) -> Response:
        return await completion(request, chat=False)

    middleware = []
    if allowed_origins:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=sorted(allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
            )
        )
    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        middleware=middleware,
    )


async def _until_disconnect(
    receive: Callable[[], Awaitable[Any]], work: Awaitable[Done], cancel: threading.Event
) -> Done:
    """Await `work`; if the client disconnects first, set `cancel` and let the work wind down.

    A non-streaming reply sends nothing until the end, so nothing else notices a client that
    left: without this the model kept generating (and every later request waited) for minutes.
    """
    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not job.done():
            cancel.set()  # the client left (or the server is stopping): stop at the next step
        watcher.cancel()
    return await job


async def _disconnected(receive: Callable[[], Awaitable[Any]]) -> None:
    """Return when the ASGI server reports the client gone (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _collect(events: Callable[[], Iterator[Event]]) -> Done:
    for event in events():
        if isinstance(event, Done):
            return event
        if isinstance(event, Error):
            raise ShellfishError(event.message, hint=event.hint)
    raise ShellfishError("the model ended without a result")


async def _pump(
    events: Callable[[], Iterator[Event]], cancel: threading.Event
) -> AsyncIterator[Event | BaseException]:
    """Run the blocking generation in a thread; a client that goes away cancels it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (server stopping)
            cancel.set()

    def work() -> None:
        try:
            for event in events():
                put(event)
        except BaseException as exc:
            put(exc)
        finally:
            put(_END)

    threading.Thread(target=work, name="serve-generate", daemon=True).start()
    try:
        while (item := await queue.get()) is not _END:
            yield item
    finally:
        cancel.set()  # client disconnected or stream finished: stop the runner at its next step


class _Reply:
    def __init__(self, *, chat: bool, model: str) -> None:
        self.chat = chat
        self.model = model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def _choice(self, index: int, text: str, finish: str | None, *, delta: bool) -> dict[str, Any]:
        if not self.chat:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        key = "delta" if delta else "message"
        if delta:
            body: dict[str, Any] = {"content": text} if text else {}
        else:
            body = {"role": "assistant", "content": text}
        return {"index": index, key: body, "logprobs": None, "finish_reason": finish}

    @staticmethod
    def _finish(done: Done) -> str:
        return "length" if done.finish_reason == "length" else "stop"

    @staticmethod
    def _usage(done: Done) -> dict[str, int]:
        return {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        }

    def full(self, done: Done) -> dict[str, Any]:
        finish = self._finish(done)
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [self._choice(i, t, finish, delta=False) for i, t in enumerate(done.texts)],
            "usage": self._usage(done),
        }

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {
            "id": self.id,
            "object": self.object + ("" if not self.chat else ".chunk"),
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    async def sse(
        self, items: AsyncIterator[Event | BaseException], include_usage: bool
    ) -> AsyncIterator[bytes]:
        if self.chat:
            yield self._chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        async for item in items:
            if isinstance(item, BaseException):
                message = str(item) if isinstance(item, ShellfishError) else repr(item)
                payload = {
                    "error": {
                        "message": message,
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
                yield f"data: {json.dumps(payload)}\n\n".encode()
                break
            if isinstance(item, Token) and item.text:
                yield self._chunk([self._choice(item.index, item.text, None, delta=True)])
            elif isinstance(item, Error):
                payload = {
                    "error": {
                        "message": item.message,
                        "type": "server_error",
                        "param": None,
                        "code": item.code,
                    }
                }
                yield f"data: {json.dumps(payload)}\n\n".encode()
                break
            elif isinstance(item, Done):
                finish = self._finish(item)
                yield self._chunk(
                    [
                        self._choice(i, "", finish, delta=True)
                        for i in range(max(1, len(item.texts)))
                    ]
                )
                if include_usage:
                    yield self._chunk([], usage=self._usage(item))
                break
        yield b"data: [DONE]\n\n"
