"""The redaction table of the zsh/bash hooks, generated from `shellfish.shell.redact`.

The hooks redact on their hot path without starting Python, so they carry their own copy of
the rules as two shell arrays (trigger words, POSIX EREs). That copy is *generated* from the
Python rule table and sits between two marker lines in each script; a test holds the committed
scripts to the generated text. After changing a rule, rewrite the scripts with

    python -m shellfish.shell.redact_hooks --write
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN = "# BEGIN generated redaction table: python -m shellfish.shell.redact_hooks --write"
END = "# END generated redaction table"
SCRIPTS = ("shellfish.zsh", "shellfish.bash")


def _quote(text: str) -> str:
    """A single-quoted shell word (the same text in zsh and bash)."""
    return "'" + text.replace("'", "'\\''") + "'"


def render_table() -> str:
    """The generated block, marker lines included, ending with a newline."""
    from shellfish.shell.redact import shell_rules

    table = shell_rules()
    lines = [BEGIN, "_shellfish_redact_when=("]
    lines += [f"  {_quote(when)}" for _name, (when, _ere) in table]
    lines += [")", "_shellfish_redact_rules=("]
    lines += [f"  {_quote(ere)}" for _name, (_when, ere) in table]
    lines += [")", END]
    return "\n".join(lines) + "\n"


def replace_table(script: str, table: str) -> str:
    """`script` with its generated block replaced by `table`; ValueError without markers."""
    start = script.find(BEGIN)
    end = script.find(END, start)
    if start < 0 or end < 0:
        raise ValueError("the script has no generated redaction table markers")
    end = script.index("\n", end) + 1 if "\n" in script[end:] else len(script)
    return script[:start] + table + script[end:]


def hooks_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "shell-hooks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the scripts in place")
    args = parser.parse_args(argv)
    table = render_table()
    stale = []
    for name in SCRIPTS:
        path = hooks_dir() / name
        text = path.read_text(encoding="utf-8")
        new = replace_table(text, table)
        if new != text:
            stale.append(name)
            if args.write:
                path.write_text(new, encoding="utf-8")
    if stale and not args.write:
        print(f"out of date: {', '.join(stale)} (run with --write)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
