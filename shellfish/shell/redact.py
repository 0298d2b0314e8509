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

# The shells' hot-path twin of a rule: (trigger words, POSIX ERE). The ERE is matched against a
# lower-cased copy of the text; its first group is kept, its last group (often empty) is kept,
# and what lies between is replaced. The hook scripts' table is generated from these
# (`python -m shellfish.shell.redact_hooks --write`), so the two never drift apart by hand.
ShellRule = tuple[str, str]

# A bare, single- or double-quoted value in the shell EREs.
_SH_VALUE = r"""("[^"]+"|'[^']+'|[^][:space:]'"`&;|<>()]+)"""
# A value that is not a variable, a path or a flag (assignments and secret flags).
_SH_SECRET_VALUE = r"""("[^"$]+"|'[^']+'|[^][:space:]'"`&;|<>()$~/.-][^][:space:]'"`&;|<>()]*)"""
_SH_BOUNDARY = "(^|[^a-z0-9_])"
# One plain argument (not a flag, not quoted).
_SH_ARG = """[[:space:]]+[^][:space:]'"&;|<>-][^][:space:]]*"""

_SHELL_RULES: list[tuple[str, ShellRule]] = []


def _rules() -> list[_Rule]:
    r: list[_Rule] = []
    _SHELL_RULES.clear()

    def add(
        name: str,
        pattern: str,
        repl: str | Callable[[re.Match[str]], str],
        flags: int = 0,
        shell: ShellRule | None = None,
    ) -> None:
        r.append((name, re.compile(pattern, flags), repl))
        if shell is not None:
            _SHELL_RULES.append((name, shell))

    # Whole private key blocks (multi-line) first, before anything else splits them up.
    add(
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        f"-----BEGIN PRIVATE KEY-----{MASK}-----END PRIVATE KEY-----",
        re.S,
        shell=("private", "(-----begin [a-z0-9 ]*private key-----)[^-]+()"),
    )
    # Credentials inside URLs: scheme://user:password@host. The password runs to the *last* @
    # before the path, so a password that itself holds an @ does not leak its tail.
    add(
        "url-credentials",
        r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]+:)[^\s/'\"]+(@)",
        rf"\1{MASK}\2",
        shell=("://", """([a-z][a-z0-9+.-]*://[^][:space:]:/@'"]+:)[^][:space:]/'"]+(@)"""),
    )
    # Authorization / API-key headers: keep the scheme word, drop the credential.
    add(
        "auth-header",
        r"(?i)(\b(?:proxy-)?authorization\s*:\s*(?:bearer|basic|token|digest|bot)?\s*)[^\s'\"]+",
        rf"\1{MASK}",
        shell=(
            "authorization",
            "((proxy-)?authorization:[[:space:]]*((bearer|basic|token|digest|bot)[[:space:]]+)?)"
            """[^][:space:]'"]+()""",
        ),
    )
    add(
        "key-header",
        r"(?i)(\bx-(?:api-key|auth-token|access-token|api-token)\s*:\s*)[^\s'\"]+",
        rf"\1{MASK}",
        shell=(
            "x-",
            """(x-(api-key|auth-token|access-token|api-token):[[:space:]]*)[^][:space:]'"]+()""",
        ),
    )
    # Cookie / Set-Cookie headers: every cookie in them is a session credential.
    add(
        "cookie-header",
        r"(?i)(\bcookie\s*:\s*)[^'\"\n]+",
        rf"\1{MASK}",
        shell=("cookie", """(cookie[[:space:]]*:[[:space:]]*)[^'"]+()"""),
    )
    # Well-known token prefixes (value shapes published by the vendors): (name, Python
    # pattern, shell trigger words, shell ERE; None: Python only).
    prefixed: list[tuple[str, str, str | None, str | None]] = [
        (
            "aws-access-key-id",
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",
            "akia asia agpa aida aroa anpa",
            _SH_BOUNDARY + "(akia|asia|agpa|aida|aroa|anpa)[0-9a-z]{16}()",
        ),
        (
            "github-token",
            r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
            "gh",
            _SH_BOUNDARY + "gh[pousr]_[a-z0-9]{30,}()",
        ),
        (
            "github-fine-grained",
            r"\bgithub_pat_[A-Za-z0-9_]{40,}\b",
            "github_pat_",
            _SH_BOUNDARY + "github_pat_[a-z0-9_]{40,}()",
        ),
        (
            "gitlab-token",
            r"\bgl(?:pat|dt|ptt|rt|oas)-[A-Za-z0-9_-]{20,}\b",
            "gl",
            _SH_BOUNDARY + "gl(pat|dt|ptt|rt|oas)-[a-z0-9_-]{20,}()",
        ),
        (
            "slack-token",
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",
            "xox",
            _SH_BOUNDARY + "xox[abposr]-[a-z0-9-]{10,}()",
        ),
        (
            "slack-webhook",
            r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
            "hooks.slack",
            r"(hooks\.slack\.com/services/)[a-z0-9/]+()",  # the host stays, the path goes
        ),
        ("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}", None, None),
        (
            "openai-key",
            r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
            "sk-",
            _SH_BOUNDARY + "sk-[a-z0-9_-]{20,}()",
        ),
        (
            "stripe-key",
            r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b",
            "_live_ _test_",
            _SH_BOUNDARY + "(sk|rk|pk)_(live|test)_[a-z0-9]{16,}()",
        ),
        (
            "google-api-key",
            r"\bAIza[0-9A-Za-z_-]{35}\b",
            "aiza",
            _SH_BOUNDARY + "aiza[0-9a-z_-]{35}()",
        ),
        (
            "google-oauth-token",
            r"\bya29\.[0-9A-Za-z._-]{20,}",
            "ya29.",
            _SH_BOUNDARY + r"ya29\.[0-9a-z._-]{20,}()",
        ),
        (
            "huggingface-token",
            r"\bhf_[A-Za-z0-9]{30,}\b",
            "hf_",
            _SH_BOUNDARY + "hf_[a-z0-9]{30,}()",
        ),
        ("npm-token", r"\bnpm_[A-Za-z0-9]{36}\b", "npm_", _SH_BOUNDARY + "npm_[a-z0-9]{36}()"),
        (
            "pypi-token",
            r"\bpypi-[A-Za-z0-9_-]{50,}",
            "pypi-",
            _SH_BOUNDARY + "pypi-[a-z0-9_-]{50,}()",
        ),
        ("digitalocean-token", r"\bdo[por]_v1_[a-f0-9]{64}\b", None, None),
        ("sendgrid-key", r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}", None, None),
        (
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            "eyj",
            _SH_BOUNDARY + r"eyj[a-z0-9_-]{8,}\.eyj[a-z0-9_-]{8,}\.[a-z0-9_-]{8,}()",
        ),
    ]
    for name, pattern, when, ere in prefixed:
        add(name, pattern, MASK, shell=(when, ere) if when and ere else None)
    # Azure storage / service bus connection strings: `AccountKey=...;`.
    add(
        "azure-key",
        r"(?i)(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*)[^;\s'\"]+",
        rf"\1{MASK}",
        shell=(
            "accountkey sharedaccess",
            "((accountkey|sharedaccesskey|sharedaccesssignature)[[:space:]]*=[[:space:]]*)"
            """[^][:space:];'"]+()""",
        ),
    )
    # `export MY_TOKEN=...`, `DB_PASSWORD=... cmd`, `password=...` in query strings and configs.
    add(
        "secret-assignment",
        rf"(?i)(\b[A-Za-z0-9_.-]*{_SECRET_WORD}[A-Za-z0-9_]*\s*[=:]\s*){_ANY_VALUE}",
        _keep_unless_flag_or_path,
        shell=(
            "pass pwd secret token key auth credential",
            "([a-z0-9_.-]*(password|passwd|passphrase|pass|pwd|secret|token|api[_-]?key|apikey"
            "|access[_-]?key|private[_-]?key|auth[_-]?key|client[_-]?secret|credentials?"
            "|session[_-]?key)[a-z0-9_]*[[:space:]]*[=:][[:space:]]*)" + _SH_SECRET_VALUE + "()",
        ),
    )
    # `--password x`, `--password=x`, `--api-key x`, `--client-secret=x` (not `--password-file`).
    add(
        "secret-flag",
        rf"(?i)((?:^|\s)(?:--[a-z0-9-]*|-){_SECRET_WORD}(?:=|\s+)){_ANY_VALUE}",
        _mask_flag_value,
        shell=(
            "pass secret token key",
            "((^|[[:space:]])(--[a-z0-9-]*|-)(password|passwd|passphrase|secret|token|api-key"
            "|apikey|access-key|client-secret)(=|[[:space:]]+))" + _SH_SECRET_VALUE + "()",
        ),
    )
    # .netrc entries: `machine HOST login USER password SECRET` (one line or several).
    add(
        "netrc-password",
        r"(\b(?:machine\s+\S+|default)(?:\s+(?:login|account)\s+\S+)*\s+password\s+)" + _ANY_VALUE,
        rf"\1{MASK}",
        shell=(
            "password",
            "((machine[[:space:]]+[^[:space:]]+|default)([[:space:]]+(login|account)"
            "[[:space:]]+[^[:space:]]+)*[[:space:]]+password[[:space:]]+)" + _SH_VALUE + "()",
        ),
    )
    # mysql -pSECRET / -p SECRET, sshpass -p SECRET, redis-cli -a SECRET.
    add(
        "short-password-flag",
        r"(\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump|sshpass|mongo|mongosh)\b[^\n|;&]*?\s-p\s*)"
        + _ANY_VALUE,
        rf"\1{MASK}",
        shell=(
            "mysql mariadb sshpass mongo",
            "((mysql|mysqldump|mysqladmin|mariadb|sshpass|mongo|mongosh)[^|;&]*[[:space:]]-p"
            "[[:space:]]*)" + _SH_VALUE + "()",
        ),
    )
    # docker / podman / az login -p SECRET (`--password-stdin` has no value to hide).
    add(
        "login-password-flag",
        r"(\b(?:docker|podman|buildah|nerdctl|az)\s+login\b[^\n|;&]*?\s-p(?:=|\s*))" + _ANY_VALUE,
        rf"\1{MASK}",
        shell=(
            "login",
            "((docker|podman|buildah|nerdctl|az)[[:space:]]+login[^|;&]*[[:space:]]-p"
            "(=|[[:space:]]*))" + _SH_VALUE + "()",
        ),
    )
    # htpasswd -b[c] FILE USER SECRET, htpasswd -nb USER SECRET (batch mode: password in argv).
    add(
        "htpasswd-batch",
        r"(\bhtpasswd\b(?:\s+-[A-Za-z]+)*?\s+-[A-Za-z]*b[A-Za-z]*(?:\s+-[A-Za-z]+)*"
        r"(?:\s+[^\s'\"&;|<>-]\S*){1,2}\s+)" + _ANY_VALUE,
        rf"\1{MASK}",
        shell=(
            "htpasswd",
            # Lower-cased, `-B` (bcrypt, prompts) reads as `-b`: so without `-n` demand both
            # FILE and USER before the value, and `htpasswd -B FILE USER` stays whole.
            "(htpasswd([[:space:]]+-[a-z]+)*[[:space:]]+-[a-z]*b[a-z]*([[:space:]]+-[a-z]+)*"
            f"({_SH_ARG}){{2}}[[:space:]]+|htpasswd([[:space:]]+-[a-z]+)*[[:space:]]+"
            f"-[a-z]*(nb|bn)[a-z]*([[:space:]]+-[a-z]+)*{_SH_ARG}[[:space:]]+)" + _SH_VALUE + "()",
        ),
    )
    add(
        "redis-cli-auth",
        r"(\bredis-cli\b[^\n|;&]*?\s-a\s+)" + _ANY_VALUE,
        rf"\1{MASK}",
        shell=("redis-cli", "(redis-cli[^|;&]*[[:space:]]-a[[:space:]]+)" + _SH_VALUE + "()"),
    )
    # curl -u user:password / --user user:password
    add(
        "curl-user",
        r"(\s(?:-u|--user)\s+[^\s:'\"]+:)" + _VALUE,
        rf"\1{MASK}",
        shell=(
            "-u --user",
            """([[:space:]](-u|--user)[[:space:]]+[^][:space:]:'"]+:)[^][:space:]'"]+()""",
        ),
    )
    # AWS secret access keys named as such in any spelling.
    add(
        "aws-secret-key",
        r"(?i)(aws_?secret_?access_?key\s*[=:]?\s*)[A-Za-z0-9/+]{40}\b",
        rf"\1{MASK}",
        shell=("aws", "(aws_?secret_?access_?key[[:space:]]*[=:]?[[:space:]]*)[a-z0-9/+]{40}()"),
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


def shell_rules() -> list[tuple[str, ShellRule]]:
    """(rule name, (trigger words, ERE)) for the zsh/bash hot path, in the order they run."""
    rules()
    return list(_SHELL_RULES)


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


def secrets_in(text: str, min_length: int = 4) -> list[str]:
    """The secret values the rules would remove from `text`, longest first.

    A model asked about `mysql -phunter2` may repeat `hunter2` in plain prose, where no rule
    sees a secret shape; masking these literal values too keeps the echo out of storage.
    Values shorter than `min_length` are left out (masking `ab` everywhere would eat words).
    """
    found: set[str] = set()
    for _name, pattern, repl in rules():

        def collect(match: re.Match[str], repl: Any = repl) -> str:
            new = repl(match) if callable(repl) else match.expand(repl)
            old = match.group(0)
            start = len(_common_prefix(old, new))
            end = len(_common_prefix(old[start:][::-1], new[start:][::-1]))
            secret = old[start : len(old) - end].strip().strip("'\"").strip()
            if new != old and len(secret) >= min_length and MASK not in secret:
                found.add(secret)
            return new

        text = pattern.sub(collect, text)
    return sorted(found, key=len, reverse=True)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def mask_known(text: str, secrets: list[str]) -> str:
    """`text` with every literal occurrence of `secrets` (longest first) replaced by the mask."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def _strings_in(value: Any) -> list[str]:
    """Every string inside a JSON-like value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings_in(v)]
    return []


def exchange_redactor(
    sources: Any, redactor: Callable[[str], str] = redact
) -> Callable[[str], str]:
    """A redactor for one exchange: `redactor`, plus every secret value the rules find in
    `sources` (the unredacted request, its context, earlier turns) masked wherever it occurs.

    A model echoes secrets in prose ("-p passes the password hunter2") where no rule sees a
    secret's shape; the request that held the secret is what identifies it.
    """
    secrets = sorted({s for text in _strings_in(sources) for s in secrets_in(text)}, key=len)
    if not secrets:
        return redactor
    secrets.reverse()

    def redact_exchange(text: str) -> str:
        return redactor(mask_known(text, secrets))

    return redact_exchange


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
