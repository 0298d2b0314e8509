"""The one redaction step every outgoing or stored text goes through.

The real rules live in `shellfish.shell.redact` (secrets in commands, env assignments, tokens,
URLs with passwords). It is imported lazily; while it is missing (a partial checkout) a
conservative fallback below masks the common secret shapes, so nothing leaves unredacted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MASK = "[REDACTED]"

_FALLBACK_PATTERNS = (
    # NAME=value / NAME: value where NAME looks like a secret.
    re.compile(
        r"(?i)\b([A-Z0-9_]*(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD|PWD|CREDENTIALS?|AUTH)[A-Z0-9_]*)"
        r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
    ),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(--?(?:password|passwd|token|api-key|secret)(?:=|\s+))(\S+)"),
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(@)"),
)
_FALLBACK_TOKENS = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,}"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
)


def _fallback_redact(text: str) -> str:
    text = _FALLBACK_TOKENS.sub(MASK, text)
    kv, bearer, flag, url = _FALLBACK_PATTERNS
    text = kv.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = bearer.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = flag.sub(lambda m: f"{m.group(1)}{MASK}", text)
    return url.sub(lambda m: f"{m.group(1)}{MASK}{m.group(2)}", text)


def redactor() -> Callable[[str], str]:
    """`shellfish.shell.redact.redact` when present, else the conservative fallback."""
    try:
        from shellfish.shell.redact import redact
    except ImportError:
        return _fallback_redact
    return redact  # type: ignore[no-any-return]


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
