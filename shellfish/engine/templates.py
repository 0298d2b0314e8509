"""Chat templates: turn a list of messages into the exact prompt text a model was tuned on.

Named templates work without jinja2:

- `chatml`: `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message (Qwen2.5, SmolLM2). When
  the first message is not a system message, the model's default system prompt is added, as the
  real templates do. The default is read from the tokenizer's own jinja `chat_template` when a
  tokenizer is given (Qwen2.5: "You are Qwen, created by Alibaba Cloud. You are a helpful
  assistant."; SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face").
- `qwen2.5` / `smollm2`: `chatml` with that model's default system prompt built in.
- `plain`: the message contents joined by blank lines (base models such as GPT-2).
- `flan`: the last user message as it is (T5 / flan-T5 read a bare instruction).
- `jinja`: the tokenizer's own `chat_template`, rendered with jinja2 (must be installed).
"""

from __future__ import annotations

import re
from typing import Any

from shellfish.errors import ModelError, UsageError

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
NAMED = ("chatml", "qwen2.5", "smollm2", "plain", "flan", "jinja")

# The default system turn inside a jinja chatml template: a string literal holding
# '<|im_start|>system\n' + fixed text + '<|im_end|>' (the newline is either an escape or real).
_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\\n|\n)([^'\"+{}]+?)<\|im_end\|>")


def default_system_prompt(chat_template: str | None) -> str | None:
    """The fixed system prompt a chatml jinja template falls back to, if it has one."""
    if not chat_template:
        return None
    m = _DEFAULT_SYSTEM.search(chat_template)
    return m.group(1) if m else None


def _check(messages: list[dict[str, str]]) -> None:
    if not isinstance(messages, list) or not messages:
        raise UsageError("a chat needs at least one message")
    for i, msg in enumerate(messages):
        if (
            not isinstance(msg, dict)
            or not isinstance(msg.get("role"), str)
            or not isinstance(msg.get("content"), str)
        ):
            raise UsageError(f"chat message {i} must have a string 'role' and 'content'")


def _chatml(messages: list[dict[str, str]], system: str | None, add_generation_prompt: bool) -> str:
    parts = []
    if messages[0]["role"] != "system" and system:
        parts.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    for msg in messages:
        parts.append(f"<|im_start|>{msg['role']}\n{msg['content']}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def _jinja(
    template: str, messages: list[dict[str, str]], add_generation_prompt: bool, tokenizer: Any
) -> str:
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:
        raise ModelError("the 'jinja' template needs jinja2", hint="pip install jinja2") from exc

    def raise_exception(message: str) -> None:
        raise UsageError(f"chat template refused the messages: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    specials = {
        name: tokenizer.decode([tid], skip_special_tokens=False)
        for name, tid in (
            ("bos_token", getattr(tokenizer, "bos_token_id", None)),
            ("eos_token", getattr(tokenizer, "eos_token_id", None)),
        )
        if isinstance(tid, int)
    }
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **specials
        )
    except UsageError:
        raise
    except Exception as exc:  # a template error is the model's fault, not the user's
        raise ModelError(
            f"the model's chat template failed: {exc}", hint="use the 'chatml' template"
        ) from exc


def render_chat(
    template: str,
    messages: list[dict[str, str]],
    *,
    add_generation_prompt: bool = True,
    tokenizer: Any = None,
) -> str:
    """The prompt text for `messages` under the named template (see the module docstring)."""
    _check(messages)
    own = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if template == "chatml":
        return _chatml(messages, default_system_prompt(own), add_generation_prompt)
    if template == "qwen2.5":
        return _chatml(messages, QWEN_SYSTEM, add_generation_prompt)
    if template == "smollm2":
        return _chatml(messages, SMOLLM_SYSTEM, add_generation_prompt)
    if template == "plain":
        return "\n\n".join(m["content"] for m in messages)
    if template == "flan":
        users = [m["content"] for m in messages if m["role"] == "user"]
        return users[-1] if users else messages[-1]["content"]
    if template == "jinja":
        if not own:
            raise ModelError(
                "this model's tokenizer has no chat_template",
                hint="use the 'chatml' or 'plain' template",
            )
        return _jinja(own, messages, add_generation_prompt, tokenizer)
    raise ModelError(f"unknown prompt template {template!r}", hint=f"use one of {', '.join(NAMED)}")
