"""Prompts for the non-suggest tasks, by model family.

Instruct models (chat templates) get chat messages; T5-style models get flan task prefixes.
`messages_for` is also what the remote backend sends, so local and remote see the same words.
"""

from __future__ import annotations

import platform
from typing import Any

from shellfish.errors import UsageError
from shellfish.request import TaskRequest

LANGUAGES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "ro": "Romanian",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
}

SYSTEM = {
    "explain": (
        "You explain shell commands to a user at a terminal. Say what the command does, part by "
        "part, in a few short sentences. Mention anything dangerous."
    ),
    "ask": (
        "You answer questions briefly and precisely. When a context is given, answer from the "
        "context only; if it does not contain the answer, say so."
    ),
    "chat": "You are shellfish, a helpful assistant in a terminal. Answer briefly and precisely.",
}


def language_name(code: str) -> str:
    name = LANGUAGES.get(code.lower())
    if name is None:
        raise UsageError(
            f"unknown language {code!r}", hint=f"use one of {', '.join(sorted(LANGUAGES))}"
        )
    return name


def _context_lines(request: TaskRequest) -> str:
    ctx = request.context or {}
    lines = []
    if ctx.get("cwd"):
        lines.append(f"Current directory: {ctx['cwd']}")
    lines.append(f"OS: {ctx.get('os') or platform.system()}; shell: {ctx.get('shell') or 'zsh'}")
    return "\n".join(lines)


def messages_for(request: TaskRequest) -> list[dict[str, str]]:
    """Chat messages for an instruct model (local or remote)."""
    task, text, opts = request.task, request.text, request.options
    if task == "translate":
        source = language_name(opts.get("from") or "en")
        target = language_name(opts.get("to") or "de")
        system = (
            f"You are a translator. Translate the user's text from {source} to {target}. "
            "Reply with the translation only."
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": text}]
    if task == "explain":
        return [
            {"role": "system", "content": SYSTEM["explain"] + "\n" + _context_lines(request)},
            {"role": "user", "content": f"Explain this command:\n{text}"},
        ]
    if task == "ask":
        context = opts.get("context")
        user = f"Context:\n{context}\n\nQuestion: {text}" if context else text
        return [{"role": "system", "content": SYSTEM["ask"]}, {"role": "user", "content": user}]
    if task == "chat":
        history: list[dict[str, Any]] = list(opts.get("messages") or [])
        messages = [{"role": "system", "content": SYSTEM["chat"] + "\n" + _context_lines(request)}]
        messages += [{"role": str(m["role"]), "content": str(m["content"])} for m in history]
        messages.append({"role": "user", "content": text})
        return messages
    if task == "prompt":
        return [{"role": "user", "content": text}]
    raise UsageError(f"no chat prompt for task {task!r}")


def flan_prompt(request: TaskRequest) -> str:
    """The flan-T5 / T5 task prefix for a request."""
    task, text, opts = request.task, request.text, request.options
    if task == "translate":
        source = language_name(opts.get("from") or "en")
        target = language_name(opts.get("to") or "de")
        return f"translate {source} to {target}: {text}"
    if task == "explain":
        return f"Explain what this shell command does: {text}"
    if task == "ask":
        context = opts.get("context")
        return f"question: {text} context: {context}" if context else f"Answer the question: {text}"
    return text


def build_prompt(request: TaskRequest, template: str, tokenizer: Any = None) -> str:
    """The exact text handed to a local runner for a non-suggest task."""
    if request.task == "prompt":
        return request.text  # free generation: the user's words as they are
    if template in ("flan", "plain"):
        return flan_prompt(request)
    from shellfish.engine.templates import render_chat

    return render_chat(template, messages_for(request), tokenizer=tokenizer)
