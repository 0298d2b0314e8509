"""The one redaction step every outgoing or stored text goes through.

The rules live in `shellfish.shell.redact` (secrets in commands, env assignments, tokens,
URLs with passwords); this module applies them to JSON-like values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def redactor() -> Callable[[str], str]:
    """The one redaction function (`shellfish.shell.redact.redact`)."""
    from shellfish.shell.redact import redact

    return redact


def redact_value(value: Any, redact: Callable[[str], str] | None = None) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, strings)."""
    fn = redact or redactor()
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: redact_value(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, fn) for v in value]
    return value
