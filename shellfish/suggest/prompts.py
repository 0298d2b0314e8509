"""The prompt of the suggest and fix tasks: instruction, retrieved examples, the request.

`build_messages` makes the chat messages (retrieved examples as earlier turns), `render_prompt`
the exact text for one runner. The answer is primed with `ANSWER_PREFIX` so that small models
write a command rather than prose. `shellfish.suggest` runs the task around these prompts.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shellfish.engine.base import Runner
    from shellfish.request import TaskRequest

SYSTEM = (
    "You translate a request into one {shell} command for {os_name}. "
    "Reply with the command only, on one line, no explanation, no code fences."
)
FIX_SYSTEM = (
    "The user's {shell} command on {os_name} failed. Reply with the corrected command only, on "
    "one line, no explanation, no code fences."
)
CWD_SENTENCE = "The current directory is `.`; write paths in it relative to it."
# The assistant turn starts inside a bash code block: small models then write the command
# itself instead of prose about it, and the line ends at the first newline.
ANSWER_PREFIX = "```bash\n"


def environment_facts(request: TaskRequest) -> dict[str, str]:
    """OS, shell and cwd of the request (GNU vs BSD userland follows from the OS)."""
    ctx = request.context or {}
    system = str(ctx.get("os") or platform.system() or "Linux")
    shell = str(ctx.get("shell") or "bash")
    shell = shell.rsplit("/", 1)[-1] or "bash"
    userland = "BSD" if system.lower() in ("darwin", "macos", "freebsd", "openbsd") else "GNU"
    os_name = "macOS" if system.lower() == "darwin" else system
    return {
        "os_name": os_name,
        "shell": shell,
        "userland": userland,
        "cwd": str(ctx.get("cwd") or ""),
    }


def build_messages(
    request: TaskRequest,
    examples: list[tuple[str, str]] | None = None,
    option_lines: list[str] | None = None,
) -> list[dict[str, str]]:
    """Chat messages: a system instruction, retrieved examples as prior turns, the request.

    Examples go in as earlier user/assistant turns because small instruct models copy the
    answer *format* of prior turns far more reliably than they follow a format instruction.
    """
    facts = environment_facts(request)
    template = FIX_SYSTEM if request.task == "fix" else SYSTEM
    system = template.format(**facts) + f" Use {facts['userland']} command-line flags."
    if facts["cwd"]:
        # Not the path itself: given "/home/me/proj", a 0.5B model wrote it into 65 of 100
        # answers (`find /home/me/proj ...` for "here"); told the directory is `.`, into none,
        # at the same NLC2CMD score (docs/quality.md, "The current directory"). The turn also
        # stays the same in every directory, so the prefix cache answers it.
        system += " " + CWD_SENTENCE
    messages = [{"role": "system", "content": system}]
    for nl, cmd in examples or []:
        messages.append({"role": "user", "content": nl})
        messages.append({"role": "assistant", "content": f"{ANSWER_PREFIX}{cmd}\n```"})
    user = _user_text(request)
    if option_lines:
        # In the last turn, not the system turn: the system turn must stay the same for every
        # request so that the prefix cache answers it.
        user += "\n(Relevant options on this machine:\n" + "\n".join(option_lines) + ")"
    messages.append({"role": "user", "content": user})
    return messages


def _user_text(request: TaskRequest) -> str:
    if request.task != "fix":
        return request.text
    # What the shell and this machine can tell about the failure (no output was captured;
    # see shellfish.suggest.failure): exit status, missing programs and files, nearest names.
    from shellfish.suggest.failure import analyse

    facts = analyse(request.text, request.context).describe()
    return "\n".join(
        [f"This command failed: {request.text}", *facts, "Reply with a different, working command."]
    )


def render_prompt(runner: Runner, messages: list[dict[str, str]]) -> str:
    """The exact prompt text for `runner` (its chat template, or a flan-style flat prompt)."""
    template = runner.info.template
    if template in ("flan", "plain"):
        parts = []
        for m in messages:
            if m["role"] == "system":
                parts.append(m["content"])
            elif m["role"] == "user":
                parts.append(f"Request: {m['content']}")
            else:
                parts.append(f"Command: {m['content']}")
        return "\n".join(parts) + "\nCommand:"
    try:
        from shellfish.engine.templates import render_chat
    except ImportError:  # the templates module is optional at this layer
        return _chatml(messages) + ANSWER_PREFIX
    return (
        render_chat(template, messages, tokenizer=getattr(runner, "tokenizer", None))
        + ANSWER_PREFIX
    )


def _chatml(messages: list[dict[str, str]]) -> str:
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + "<|im_start|>assistant\n"
