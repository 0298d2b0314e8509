"""Chat messages sent to a remote endpoint for a request.

Non-suggest tasks use `shellfish.tasks.prompts.messages_for`, so the local and the remote model
see the same words; suggest and fix (which locally go through candidate generation and
validation) get a plain instruction asking for one command.
"""

from __future__ import annotations

from typing import Any

from shellfish.request import TaskRequest

SUGGEST_SYSTEM = (
    "You turn a request written in plain words into one shell command for {shell} on {os}. "
    "Reply with the command only: no explanation, no code fences, no leading $."
)
FIX_SYSTEM = (
    "The user's last shell command failed. Reply with one corrected command for {shell} on {os}: "
    "the command only, no explanation, no code fences."
)


def _recent(context: dict[str, Any]) -> list[str]:
    for key in ("recent_commands", "history", "recent"):
        value = context.get(key)
        if isinstance(value, list):
            return [str(v) for v in value if isinstance(v, (str, int, float))]
    return []


def _context_block(context: dict[str, Any] | None) -> str:
    ctx = context or {}
    lines = []
    if ctx.get("cwd"):
        lines.append(f"Current directory: {ctx['cwd']}")
    recent = _recent(ctx)
    if recent:
        lines.append("Recent commands:\n" + "\n".join(f"  {c}" for c in recent[-10:]))
    if ctx.get("last_exit_status") not in (None, 0):
        lines.append(f"Last exit status: {ctx['last_exit_status']}")
    return "\n".join(lines)


def chat_messages(request: TaskRequest) -> list[dict[str, str]]:
    """The messages for `request`, before redaction (the backend redacts them)."""
    if request.task in ("suggest", "fix"):
        ctx = request.context or {}
        system = (SUGGEST_SYSTEM if request.task == "suggest" else FIX_SYSTEM).format(
            shell=ctx.get("shell") or "zsh", os=ctx.get("os") or "Linux"
        )
        block = _context_block(request.context)
        if block:
            system += "\n" + block
        return [{"role": "system", "content": system}, {"role": "user", "content": request.text}]
    from shellfish.tasks.prompts import messages_for

    return messages_for(request)
