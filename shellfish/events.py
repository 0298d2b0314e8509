"""Typed stream events.

The engine, the remote backend and the daemon client all yield these; the renderer, the REPL,
the daemon server and the shell widget consume them. Each event has a JSON form (`to_dict` /
`event_from_dict`) so the daemon protocol carries exactly the same objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class Token:
    """A piece of text ready to show (already detokenized, never half a UTF-8 character)."""

    text: str
    index: int = 0  # which of the n samples / candidates this belongs to
    kind: str = "token"


@dataclass(frozen=True)
class Status:
    """Progress or chatter for stderr / a status line (loading model, prefill done, ...)."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)
    kind: str = "status"


@dataclass(frozen=True)
class Done:
    """The final event of a successful stream: full texts, timings and token counts."""

    texts: list[str]
    model: str = ""
    backend: str = "local"  # local | daemon | remote
    prompt_tokens: int = 0
    completion_tokens: int = 0
    load_ms: float = 0.0
    prefill_ms: float = 0.0
    first_token_ms: float = 0.0
    total_ms: float = 0.0
    finish_reason: str = "stop"  # stop | length | cancelled
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "done"

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""


@dataclass(frozen=True)
class Error:
    """An error carried as data (daemon replies, remote failures)."""

    message: str
    code: str = "error"
    hint: str | None = None
    kind: str = "error"


Event = Union[Token, Status, Done, Error]  # noqa: UP007 - a runtime alias on Python 3.10

_KINDS: dict[str, type] = {"token": Token, "status": Status, "done": Done, "error": Error}


def event_to_dict(event: Event) -> dict[str, Any]:
    return asdict(event)


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON form; raises ValueError on anything malformed."""
    kind = data.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event kind: {kind!r}")
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    try:
        event: Event = cls(**{k: v for k, v in data.items() if k in names})
        return event
    except TypeError as exc:
        raise ValueError(f"malformed {kind} event: {exc}") from exc
