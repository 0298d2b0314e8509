"""The daemon wire protocol: framing, request validation, reply encoding (docs/protocol.md).

Newline-delimited JSON over a Unix stream socket. A request is one object
`{"v": 1, "cmd": ..., "id": ...}`; a reply is a stream of event objects (`shellfish.events`)
each with `"final": false` except the last. Errors travel as data (`kind: "error"` with a
`code`). Shell widgets may ask for `reply_format: "lines"`: marker lines instead of JSON, encoded
by `shellfish.shell.markers` (the one codec the CLI's widget path uses too).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from shellfish.errors import (
    Cancelled,
    ConfigError,
    DaemonError,
    ModelError,
    ModelNotFound,
    PromptTooLong,
    ProtocolError,
    ShellfishError,
    UsageError,
)
from shellfish.events import Error, Event, event_from_dict, event_to_dict
from shellfish.request import TASK_NAMES, TaskRequest

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1 << 20  # one request line, newline excluded

#: Commands a client may send. The task names are shorthands for `generate` with that task.
TASK_COMMANDS = ("suggest", "translate", "explain", "ask")
COMMANDS = ("generate", *TASK_COMMANDS, "load", "unload", "status", "cancel", "shutdown", "ping")
REPLY_FORMATS = ("json", "lines")

RESTART_HINT = "restart the daemon (`shellfish daemon restart`)"


class BadRequest(ValueError):
    """A request line that cannot be served; `code` is the protocol error code."""

    def __init__(
        self,
        message: str,
        code: str = "bad_request",
        *,
        hint: str | None = None,
        request_id: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint
        self.request_id = request_id
        self.reply_format = "json"

    def to_event(self) -> Error:
        return Error(message=str(self), code=self.code, hint=self.hint)


@dataclass
class Request:
    """A validated request line."""

    cmd: str
    id: Any = None
    reply_format: str = "json"
    task: TaskRequest | None = None  # generate / task commands
    model: str | None = None  # load / unload
    raw: dict[str, Any] = field(default_factory=dict)


def parse_request(line: bytes) -> Request:
    """Decode and validate one request line (without its newline); raises `BadRequest`."""
    if len(line) > MAX_LINE_BYTES:
        raise BadRequest(f"request line is larger than {MAX_LINE_BYTES} bytes", "too_large")
    try:
        # Bytes that are not UTF-8 become U+FFFD (as the CLI and the shell widgets do).
        data = json.loads(line.decode("utf-8", errors="replace"), parse_int=_parse_int)
    except RecursionError as exc:  # e.g. 100k nested arrays: the decoder recurses per level
        raise BadRequest("request is nested too deeply", "bad_json") from exc
    except ValueError as exc:  # JSONDecodeError, an over-long integer
        raise BadRequest(f"request is not valid JSON: {exc}", "bad_json") from exc
    if not isinstance(data, dict):
        raise BadRequest("request must be a JSON object", "bad_json")
    request_id = data.get("id")
    reply_format = data.get("reply_format", "json")
    try:
        return _validate(data, request_id, reply_format)
    except BadRequest as exc:
        exc.request_id = request_id
        exc.reply_format = reply_format if reply_format in REPLY_FORMATS else "json"
        raise


#: Longer integers are refused on every Python (3.11+ refuses over 4300 digits on its own).
MAX_INT_DIGITS = 1000


def _parse_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _validate(data: dict[str, Any], request_id: Any, reply_format: Any) -> Request:
    version = data.get("v")
    if version != PROTOCOL_VERSION:
        raise BadRequest(
            f"daemon speaks protocol {PROTOCOL_VERSION}, client sent {version!r}",
            "version",
            hint=RESTART_HINT,
            request_id=request_id,
        )
    cmd = data.get("cmd")
    if cmd not in COMMANDS:
        raise BadRequest(
            f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}", request_id=request_id
        )
    if reply_format not in REPLY_FORMATS:
        raise BadRequest(
            f"reply_format must be one of {', '.join(REPLY_FORMATS)}", request_id=request_id
        )
    request = Request(cmd=cmd, id=request_id, reply_format=reply_format, raw=data)
    if cmd == "generate" or cmd in TASK_COMMANDS:
        payload = data.get("request")
        if not isinstance(payload, dict):
            raise BadRequest("'request' must be an object (a TaskRequest)", request_id=request_id)
        if cmd != "generate":
            if payload.get("task", cmd) != cmd:
                raise BadRequest(
                    f"command {cmd!r} cannot carry task {payload.get('task')!r}",
                    request_id=request_id,
                )
            payload = {**payload, "task": cmd}
        try:
            request.task = TaskRequest.from_dict(payload)
            check_generation(request.task.generation)
        except ValueError as exc:
            raise BadRequest(str(exc), request_id=request_id) from exc
        if request.task.task not in TASK_NAMES:  # pragma: no cover - from_dict checks it
            raise BadRequest(f"unknown task {request.task.task!r}", request_id=request_id)
    elif cmd in ("load", "unload"):
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest(f"'{cmd}' needs a non-empty 'model' string", request_id=request_id)
        request.model = model
    return request


#: Upper bounds on `generation` values a client may ask for (the CLI's flags stay far below).
GENERATION_LIMITS = {"max_new_tokens": 1 << 16, "n": 64, "num_beams": 64, "top_k": 1 << 20}


def check_generation(generation: dict[str, Any]) -> None:
    """Validate a request's `generation` overrides (names, JSON types, ranges); ValueError.

    The daemon checks them before running anything, so a bad value is `bad_request` with a
    message naming the field, never an `internal` error from deep inside a runner.
    """
    import dataclasses as dc

    from shellfish.engine.base import GenerationConfig
    from shellfish.errors import UsageError

    # keep_system_turn is the suggest task's own to set (what it keeps holds nothing of the user's)
    fields = {f.name: f for f in dc.fields(GenerationConfig) if f.name != "keep_system_turn"}
    for name, value in generation.items():
        if name not in fields:
            raise ValueError(f"unknown generation setting {name!r}; known: {', '.join(fields)}")
        if value is None:
            continue
        kind = str(fields[name].type)
        if kind.startswith("int") and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"generation.{name} must be an integer")
        if kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"generation.{name} must be a number")
        if kind == "bool" and not isinstance(value, bool):
            raise ValueError(f"generation.{name} must be true or false")
        if name == "stop" and (
            not isinstance(value, list) or not all(isinstance(x, str) for x in value)
        ):
            raise ValueError("generation.stop must be a list of strings")
        if name in GENERATION_LIMITS and value > GENERATION_LIMITS[name]:
            raise ValueError(f"generation.{name} must be at most {GENERATION_LIMITS[name]}")
        if kind == "float" and not math.isfinite(value):
            raise ValueError(f"generation.{name} must be a finite number")
        if name == "seed" and not 0 <= value < 1 << 64:
            raise ValueError("generation.seed must be in [0, 2**64)")
    try:
        GenerationConfig().merged(**generation).validate()
    except UsageError as exc:
        raise ValueError(f"bad generation settings: {exc.message}") from exc


def make_request(
    cmd: str, *, request_id: Any = None, version: int = PROTOCOL_VERSION, **fields: Any
) -> bytes:
    """Encode a request line (newline included)."""
    data: dict[str, Any] = {"v": version, "cmd": cmd}
    if request_id is not None:
        data["id"] = request_id
    data.update({k: v for k, v in fields.items() if v is not None})
    return encode_line(data)


def encode_line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def encode_event(event: Event, *, final: bool, request_id: Any = None) -> bytes:
    """One JSON reply line for `event`."""
    data = event_to_dict(event)
    data["final"] = final
    data["v"] = PROTOCOL_VERSION
    if request_id is not None:
        data["id"] = request_id
    return encode_line(data)


def decode_reply(line: bytes) -> tuple[Event, bool]:
    """Decode one JSON reply line into (event, final); raises ProtocolError when malformed."""
    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"the daemon sent a malformed reply: {exc}", hint=RESTART_HINT) from exc
    if not isinstance(data, dict):
        raise ProtocolError("the daemon sent a malformed reply (not an object)", hint=RESTART_HINT)
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"the daemon speaks protocol {version}, this client speaks {PROTOCOL_VERSION}",
            hint=RESTART_HINT,
        )
    try:
        event = event_from_dict(data)
    except ValueError as exc:
        raise ProtocolError(f"the daemon sent a malformed reply: {exc}", hint=RESTART_HINT) from exc
    return event, bool(data.get("final", False))


# -- errors as data, both ways ------------------------------------------------------------------

# Error codes for library errors, both ways; the most specific class first (the code of an
# exception is that of the first class it is an instance of).
_ERROR_CODES: tuple[tuple[type[ShellfishError], str], ...] = (
    (ModelNotFound, "model_not_found"),
    (ModelError, "model_error"),
    (Cancelled, "cancelled"),
    (UsageError, "bad_request"),
    (PromptTooLong, "prompt_too_long"),
    (ConfigError, "config"),
)


def error_code_for(exc: BaseException) -> str:
    for cls, code in _ERROR_CODES:
        if isinstance(exc, cls):
            return code
    return "error" if isinstance(exc, ShellfishError) else "internal"


def error_event(exc: BaseException) -> Error:
    if isinstance(exc, ShellfishError):
        return Error(message=exc.message, code=error_code_for(exc), hint=exc.hint)
    return Error(
        message=f"internal daemon error: {type(exc).__name__}: {exc}",
        code="internal",
        hint="see the log (`shellfish daemon logs`)",
    )


def exception_for(event: Error) -> ShellfishError:
    """The ShellfishError a client raises for an error reply."""
    classes: dict[str, type[ShellfishError]] = {
        "version": ProtocolError,
        "bad_json": ProtocolError,
        "too_large": ProtocolError,
        **{code: known for known, code in _ERROR_CODES},
    }
    cls = classes.get(event.code, DaemonError)
    hint = event.hint
    if event.code == "version" and not hint:
        hint = RESTART_HINT
    return cls(event.message, hint=hint)
