"""Option names and their one-line descriptions, parsed out of `--help` output and man pages.

Two inputs: plain text (``--help`` output, ``man -P cat`` output) and raw roff (a man file read
from disk, man or mdoc macros), which `roff_to_text` flattens first. An option line is a line
that, once stripped, starts with a dash: ``-r, -R, --recursive   descend into directories`` or
the man ``.TP`` form where the description follows on the next lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPTION_NAME = re.compile(r"(?<![\w-])(--?[A-Za-z0-9?#@][A-Za-z0-9_.?#@+-]*)")
_SPLIT_DESC = re.compile(r"\s{2,}|\t")
_FONT = re.compile(r"\\f(?:\[[A-Za-z]*\]|\(..|[A-Za-z0-9])")
_ESCAPES = {
    r"\-": "-",
    r"\(em": "--",
    r"\(en": "-",
    r"\(hy": "-",
    r"\e": "\\",
    r"\ ": " ",
    r"\&": "",
    r"\(aq": "'",
    r"\(dq": '"',
    r"\(lq": '"',
    r"\(rq": '"',
    r"\|": "",
    r"\^": "",
    r"\:": "",
    r"\%": "",
    r"\~": " ",
    r"\(bu": "*",
    r"\,": "",
    r"\/": "",
}
# mdoc macros that stand for punctuation or formatting, dropped from their line
_MDOC_DROP = {
    "Op",
    "Oo",
    "Oc",
    "Ar",
    "Ns",
    "Pq",
    "Bq",
    "Brq",
    "Xo",
    "Xc",
    "Cm",
    "Li",
    "Em",
    "Sy",
    "Pa",
    "Ev",
    "Dq",
    "Qq",
    "Sq",
    "Va",
    "Ic",
    "No",
    "Nm",
    "Xr",
}


@dataclass(frozen=True)
class Option:
    names: tuple[str, ...]  # e.g. ("-r", "-R", "--recursive")
    description: str

    def line(self) -> str:
        desc = f"  {self.description}" if self.description else ""
        return f"{', '.join(self.names)}{desc}"


def roff_to_text(roff: str) -> str:
    """Flatten man(7)/mdoc(7) source to plain lines (enough to find options, not to typeset)."""
    out: list[str] = []
    for raw in roff.splitlines():
        line = raw.rstrip()
        if line.startswith(('.\\"', "'\\\"", '.\\\\"')):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].partition(" ")
            macro = macro.strip()
            if macro in (
                "TP",
                "PP",
                "LP",
                "P",
                "IP",
                "HP",
                "sp",
                "br",
                "RS",
                "RE",
                "Pp",
                "Bl",
                "El",
                "Sh",
                "SH",
                "SS",
                "Ss",
            ) and macro not in ("IP", "Sh", "SH", "SS", "Ss"):
                out.append("")
                continue
            if macro == "It":
                # mdoc list item: `.It Fl r , Fl -recursive` -> "-r, --recursive"
                words = rest.split()
                text = []
                flag_next = False
                for w in words:
                    if w == "Fl":
                        flag_next = True
                        continue
                    if w in _MDOC_DROP:
                        continue
                    text.append(f"-{w}" if flag_next else w)
                    flag_next = False
                out.append("")
                out.append(" ".join(text).replace(" ,", ","))
                continue
            if macro in (
                "B",
                "I",
                "BR",
                "RB",
                "BI",
                "IB",
                "IR",
                "RI",
                "SM",
                "SB",
                "IP",
                "SH",
                "SS",
                "Sh",
                "Ss",
                "Nd",
                "Dl",
                "D1",
            ):
                rest = (
                    rest.replace('"', "")
                    if macro not in ("IP",)
                    else rest.split('"')[1]
                    if rest.startswith('"')
                    else rest.split(" ")[0]
                )
                out.append(_unescape(rest))
                continue
            if macro == "Fl":
                out.append("-" + _unescape(rest).split(" ")[0])
                continue
            continue  # other requests: no text we need
        out.append(_unescape(line))
    return "\n".join(out)


def _unescape(text: str) -> str:
    text = _FONT.sub("", text)
    for k, v in _ESCAPES.items():
        text = text.replace(k, v)
    return re.sub(r"\\\*\(..|\\\*.|\\\[[^\]]*\]|\\.", "", text)


def parse_options(text: str, *, max_options: int = 400) -> list[Option]:
    """The options documented in `text` (help output or flattened man page), in order."""
    lines = text.splitlines()
    options: list[Option] = []
    seen: set[tuple[str, ...]] = set()
    for i, raw in enumerate(lines):
        stripped = raw.strip()
        if not stripped.startswith("-") or stripped.startswith("---") or len(stripped) < 2:
            continue
        parts = _SPLIT_DESC.split(stripped, maxsplit=1)
        head = parts[0]
        desc = parts[1].strip() if len(parts) > 1 else ""
        names = tuple(
            dict.fromkeys(_clean(m) for m in _OPTION_NAME.findall(head) if _is_option(m, head))
        )
        if not names:
            continue
        if not desc:  # man .TP style: the description is the next non-empty line
            for nxt in lines[i + 1 : i + 4]:
                if nxt.strip():
                    if not nxt.strip().startswith("-"):
                        desc = nxt.strip()
                    break
        if names in seen:
            continue
        seen.add(names)
        options.append(Option(names, _shorten(desc)))
        if len(options) >= max_options:
            break
    return options


def option_names(options: list[Option]) -> set[str]:
    return {n for o in options for n in o.names}


def _is_option(match: str, head: str) -> bool:
    return (
        match not in ("-", "--") and not re.fullmatch(r"-\d+(\.\d+)?[a-z]?", match)
    ) or match in head[:3]


def _clean(name: str) -> str:
    return name.rstrip(".,;:=[")


def _shorten(desc: str, limit: int = 100) -> str:
    desc = " ".join(desc.split())
    return desc if len(desc) <= limit else desc[: limit - 3].rstrip() + "..."
