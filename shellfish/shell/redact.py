"""Secret redaction: the reference implementation.

Everything that stores or sends text calls `redact` first: the history log, the remote
fallback, the shell context. The zsh/bash hooks run a smaller pure-shell version on their hot
path (before writing the per-session context file); this module runs again before anything
leaves the process, and it is the one the tests hold to a table of secret shapes and harmless
look-alikes.

The rules keep the *shape* of the text (`password=[REDACTED]`, `https://user:[REDACTED]@host`)
so a model still sees what the command did, and they never touch git SHAs, UUIDs, paths, or
flags like `--password-file`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MASK = "[REDACTED]"

# A value: up to the next whitespace, quote or shell operator.
_VALUE = r"""[^\s'"`&;|<>)]+"""
# A quoted or bare value.
_ANY_VALUE = rf"""(?:"[^"\n]*"|'[^'\n]*'|{_VALUE})"""

# Words that make a name or flag secret-bearing (`MY_API_TOKEN`, `--client-secret`, `db_password`).
_SECRET_WORD = (
    r"(?:password|passwd|passphrase|pass|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|auth[_-]?key|client[_-]?secret|credentials?|session[_-]?key|signature)"
)

_Rule = tuple[str, "re.Pattern[str]", "str | Callable[[re.Match[str]], str]"]


def _rules() -> list[_Rule]:
    r: list[_Rule] = []

    def add(
        name: str, pattern: str, repl: str | Callable[[re.Match[str]], str], flags: int = 0
    ) -> None:
        r.append((name, re.compile(pattern, flags), repl))

    # Whole private key blocks (multi-line) first, before anything else splits them up.
    add(
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        f"-----BEGIN PRIVATE KEY-----{MASK}-----END PRIVATE KEY-----",
        re.S,
    )
    # Credentials inside URLs: scheme://user:password@host
    add(
        "url-credentials",
        r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]+:)[^\s@/'\"]+(@)",
        rf"\1{MASK}\2",
    )
    # Authorization / API-key headers: keep the scheme word, drop the credential.
    add(
        "auth-header",
        r"(?i)(\b(?:proxy-)?authorization\s*:\s*(?:bearer|basic|token|digest|bot)?\s*)[^\s'\"]+",
        rf"\1{MASK}",
    )
    add(
        "key-header",
        r"(?i)(\bx-(?:api-key|auth-token|access-token|api-token)\s*:\s*)[^\s'\"]+",
        rf"\1{MASK}",
    )
    # Well-known token prefixes (value shapes published by the vendors).
    prefixed = [
        ("aws-access-key-id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b"),
        ("github-token", r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
        ("github-fine-grained", r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"),
        ("gitlab-token", r"\bgl(?:pat|dt|ptt|rt|oas)-[A-Za-z0-9_-]{20,}\b"),
        ("slack-token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
        ("slack-webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+"),
        ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
        ("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
        ("stripe-key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        ("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        ("huggingface-token", r"\bhf_[A-Za-z0-9]{30,}\b"),
        ("npm-token", r"\bnpm_[A-Za-z0-9]{36}\b"),
        ("pypi-token", r"\bpypi-[A-Za-z0-9_-]{50,}"),
        ("digitalocean-token", r"\bdo[por]_v1_[a-f0-9]{64}\b"),
        ("sendgrid-key", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
        ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ]
    for name, pattern in prefixed:
        add(name, pattern, MASK)
    # `export MY_TOKEN=...`, `DB_PASSWORD=... cmd`, `password=...` in query strings and configs.
    add(
        "secret-assignment",
        rf"(?i)(\b[A-Za-z0-9_.-]*{_SECRET_WORD}[A-Za-z0-9_]*\s*[=:]\s*){_ANY_VALUE}",
        _keep_unless_flag_or_path,
    )
    # `--password x`, `--password=x`, `--api-key x`, `--client-secret=x` (not `--password-file`).
    add(
        "secret-flag",
        rf"(?i)((?:^|\s)(?:--[a-z0-9-]*|-){_SECRET_WORD}(?:=|\s+)){_ANY_VALUE}",
        _mask_flag_value,
    )
    # mysql -pSECRET / -p SECRET, sshpass -p SECRET, redis-cli -a SECRET.
    add(
        "short-password-flag",
        r"(\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump|sshpass|mongo|mongosh)\b[^\n|;&]*?\s-p\s*)"
        + _ANY_VALUE,
        rf"\1{MASK}",
    )
    add("redis-cli-auth", r"(\bredis-cli\b[^\n|;&]*?\s-a\s+)" + _ANY_VALUE, rf"\1{MASK}")
    # curl -u user:password / --user user:password
    add("curl-user", r"(\s(?:-u|--user)\s+[^\s:'\"]+:)" + _VALUE, rf"\1{MASK}")
    # AWS secret access keys named as such in any spelling.
    add(
        "aws-secret-key",
        r"(?i)(aws_?secret_?access_?key\s*[=:]?\s*)[A-Za-z0-9/+]{40}\b",
        rf"\1{MASK}",
    )
    return r


def _is_harmless_value(value: str) -> bool:
    """Values that name *where* a secret lives rather than the secret itself."""
    bare = value.strip("'\"")
    if not bare or bare == MASK:
        return True
    if bare.startswith(("$", "/", "~/", "./", "../", "<")):  # a variable, a path, a placeholder
        return True
    return bare.lower() in {"true", "false", "none", "null", "yes", "no", "stdin", "-"}


def _keep_unless_flag_or_path(match: re.Match[str]) -> str:
    head = match.group(1)
    value = match.group(0)[len(head) :]
    name = head.rstrip("=: \t").lower()
    # `--password-file=...`, `TOKEN_FILE=...`, `PASSWORD_PATH=...`: a location, not a secret.
    if name.endswith(("file", "path", "dir", "_env", "-env", "_cmd", "-command", "_url", "-url")):
        return match.group(0)
    if head.lstrip().startswith("-"):
        return match.group(0)  # flags are the secret-flag rule's business
    if _is_harmless_value(value):
        return match.group(0)
    return head + MASK


def _mask_flag_value(match: re.Match[str]) -> str:
    head = match.group(1)
    value = match.group(0)[len(head) :]
    flag = head.strip().rstrip("=").lower()
    if flag.endswith(("-file", "-path", "-stdin", "-env", "-dir", "-command", "-cmd", "-url")):
        return match.group(0)
    if _is_harmless_value(value) or value.startswith("-"):
        return match.group(0)
    return head + MASK


_RULES: list[_Rule] | None = None


def rules() -> list[_Rule]:
    """The compiled rules, in the order they run (built on first use: importing does no work)."""
    global _RULES
    if _RULES is None:
        _RULES = _rules()
    return _RULES


def redact(text: str) -> str:
    """Return `text` with every secret the rules recognise replaced by `[REDACTED]`."""
    if not text:
        return text
    for _name, pattern, repl in rules():
        text = pattern.sub(repl, text)
    return text


def findings(text: str) -> list[str]:
    """Names of the rules that would change `text` (for `shellfish context` and tests)."""
    found = []
    for name, pattern, repl in rules():
        new = pattern.sub(repl, text)
        if new != text:
            found.append(name)
            text = new
    return found


def redact_obj(value: Any, redactor: Callable[[str], str] = redact) -> Any:
    """Redact every string inside nested dicts/lists/tuples (keys are kept as they are).

    `redactor` replaces `redact` where a caller was given its own (tests, a stricter policy).
    """
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {k: redact_obj(v, redactor) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_obj(v, redactor) for v in value]
    return value
