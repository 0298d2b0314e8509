"""The marker-line reply format the zsh/bash widgets parse (`reply_format: "lines"`).

One reply is zero or more `SHELLFISH_CMD<TAB>command` lines (best first), any number of
`SHELLFISH_WARN<TAB>text` lines, at most one `SHELLFISH_ERR<TAB>text`, then `SHELLFISH_END`.
Payloads escape backslash, newline and tab as `\\\\`, `\\n`, `\\t` (docs/protocol.md). The
daemon's `lines` replies and `shellfish widget ...` print exactly this, so the shell scripts
parse one format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

CMD = "SHELLFISH_CMD"
WARN = "SHELLFISH_WARN"
ERR = "SHELLFISH_ERR"
END = "SHELLFISH_END"
PID = "SHELLFISH_PID"  # first line of the CLI slow path: the pid a cancel kills (shell side only)
MARKERS = (CMD, WARN, ERR, END, PID)


def escape_payload(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unescape_payload(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append({"\\": "\\", "n": "\n", "t": "\t"}.get(text[i + 1], text[i : i + 2]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def suggestion_lines(commands: Sequence[str], warnings: Iterable[str] = ()) -> list[str]:
    """CMD lines (empty and duplicate commands dropped), WARN lines, then END."""
    lines: list[str] = []
    seen: set[str] = set()
    for command in commands:
        command = command.strip()
        if command and command not in seen:
            seen.add(command)
            lines.append(f"{CMD}\t{escape_payload(command)}")
    if not lines:
        return error_lines("the model gave no command - rephrase the request")
    lines.extend(f"{WARN}\t{escape_payload(w)}" for w in warnings)
    lines.append(END)
    return lines


def error_lines(message: str) -> list[str]:
    return [f"{ERR}\t{escape_payload(message)}", END]


def parse_lines(lines: Iterable[str]) -> tuple[list[str], list[str], str | None, bool]:
    """(commands, warnings, error, ended) from marker lines; unknown lines are ignored."""
    commands: list[str] = []
    warnings: list[str] = []
    error: str | None = None
    ended = False
    for line in lines:
        line = line.rstrip("\n")
        marker, _, payload = line.partition("\t")
        if marker == CMD:
            commands.append(unescape_payload(payload))
        elif marker == WARN:
            warnings.append(unescape_payload(payload))
        elif marker == ERR:
            error = unescape_payload(payload)
        elif marker == END:
            ended = True
            break
    return commands, warnings, error, ended
