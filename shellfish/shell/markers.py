"""The one codec of the marker-line reply the zsh/bash widgets parse (`reply_format: "lines"`).

One reply is zero or more `SHELLFISH_CMD<TAB>command` lines (best first), any number of
`SHELLFISH_WARN<TAB>text` lines, or instead one `SHELLFISH_ERR<TAB>text`, then `SHELLFISH_END`.
Payloads escape backslash, newline and tab as `\\\\`, `\\n`, `\\t` (docs/protocol.md).

Both producers encode through `reply_lines` here: the daemon's `lines` replies (the widget's
fast path, `daemon/connection.py`) and `shellfish widget ...` (the slow path, `cli/shell.py`),
so the shell scripts parse one format and the two paths answer the same events with the same
bytes (tests/test_shell_cli.py compares them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shellfish.events import Done, Error, Event

CMD = "SHELLFISH_CMD"
WARN = "SHELLFISH_WARN"
ERR = "SHELLFISH_ERR"
END = "SHELLFISH_END"
PID = "SHELLFISH_PID"  # first line of the CLI slow path: the pid a cancel kills (shell side only)
MARKERS = (CMD, WARN, ERR, END, PID)

NO_COMMAND = "the model gave no command - rephrase the request"
NO_ANSWER = "no answer came back"
CANCELLED = "cancelled"


def escape_payload(text: str) -> str:
    """Escape `\\`, newline and tab so a payload fits on one marker line."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unescape_payload(text: str) -> str:
    """Invert `escape_payload`; an unknown escape is kept as it is."""
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
    """CMD lines (empty and duplicate commands dropped), WARN lines, then END.

    No command left is an error reply (`NO_COMMAND`): an empty reply would leave the widget
    silent, as if nothing had been asked.
    """
    lines: list[str] = []
    seen: set[str] = set()
    for command in commands:
        command = command.strip()
        if command and command not in seen:
            seen.add(command)
            lines.append(f"{CMD}\t{escape_payload(command)}")
    if not lines:
        return error_lines(NO_COMMAND)
    lines.extend(f"{WARN}\t{escape_payload(str(w))}" for w in warnings)
    lines.append(END)
    return lines


def error_lines(message: str) -> list[str]:
    return [f"{ERR}\t{escape_payload(message)}", END]


def reply_lines(final: Event | None) -> list[str]:
    """The whole reply for a stream's final event (None: the stream ended without one).

    `Done`: its texts as commands and `extra["warnings"]` as warnings; a cancelled generation
    (`finish_reason == "cancelled"`) is the `CANCELLED` error, since its partial text is no
    command to insert. `Error`: `message - hint`. Anything else: `NO_ANSWER`.
    """
    if isinstance(final, Done):
        if final.finish_reason == "cancelled":
            return error_lines(CANCELLED)
        warnings = final.extra.get("warnings")
        return suggestion_lines(final.texts, warnings if isinstance(warnings, list) else ())
    if isinstance(final, Error):
        return error_lines(f"{final.message} - {final.hint}" if final.hint else final.message)
    return error_lines(NO_ANSWER)


def encode(lines: Iterable[str]) -> bytes:
    """The bytes on the wire (or on stdout): one newline-terminated UTF-8 line each."""
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


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
