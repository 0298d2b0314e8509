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


def strings_in(value: Any) -> list[str]:
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    return []


def exchange_redactor(
    sources: Any, redact: Callable[[str], str] | None = None
) -> Callable[[str], str]:
    """A redactor for one exchange: the rules, plus every secret value the rules find in
    `sources` (the unredacted request, its context, earlier turns) masked wherever it occurs.

    A model echoes secrets in prose ("-p passes the password hunter2") where no rule sees a
    secret's shape; the request that held the secret is what identifies it.
    """
    from shellfish.shell.redact import mask_known, secrets_in

    fn = redact or redactor()
    secrets = sorted({s for text in strings_in(sources) for s in secrets_in(text)}, key=len)
    if not secrets:
        return fn
    secrets.reverse()

    def redact_exchange(text: str) -> str:
        return fn(mask_known(text, secrets))

    return redact_exchange
