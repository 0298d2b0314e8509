"""A request for one task, as it travels from a client to the engine (or over the socket)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

TASK_NAMES = ("suggest", "fix", "prompt", "translate", "explain", "ask", "chat")


def clean_text(value: Any) -> Any:
    """`value` (a string, or the strings inside dicts and lists) as valid Unicode: each lone
    surrogate becomes U+FFFD. They come from bytes that are not UTF-8 (Python decodes argv, and
    stdin under a C locale, with `surrogateescape`) or from `\\udcff` escapes in JSON; the
    tokenizer, SQLite and HTTP clients all fail on them."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean_text(k): clean_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_text(v) for v in value]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class TaskRequest:
    task: str  # one of TASK_NAMES
    text: str  # the user's words (or the command to explain, the question to answer)
    model: str | None = None  # catalog name or alias; None: routed by task
    generation: dict[str, Any] = field(default_factory=dict)  # GenerationConfig overrides
    context: dict[str, Any] | None = None  # shell context, already redacted
    options: dict[str, Any] = field(default_factory=dict)  # to/from language, ask context, messages

    def __post_init__(self) -> None:
        self.text = clean_text(self.text)
        self.options = clean_text(self.options)
        self.context = clean_text(self.context)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRequest:
        if not isinstance(data, dict):
            raise ValueError("request must be a JSON object")
        task = data.get("task")
        text = data.get("text")
        if task not in TASK_NAMES:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_NAMES)}")
        if not isinstance(text, str):
            raise ValueError("'text' must be a string")
        model = data.get("model")
        if model is not None and not isinstance(model, str):
            raise ValueError("'model' must be a string or null")
        generation = data.get("generation") or {}
        options = data.get("options") or {}
        context = data.get("context")
        if not isinstance(generation, dict) or not isinstance(options, dict):
            raise ValueError("'generation' and 'options' must be objects")
        if context is not None and not isinstance(context, dict):
            raise ValueError("'context' must be an object or null")
        return cls(
            task=task,
            text=text,
            model=model,
            generation=generation,
            context=context,
            options=options,
        )
