"""What every runner offers: a generation config and a streaming `generate`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from shellfish.events import Event


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate. `temperature == 0` means greedy; `num_beams > 1` means beam search."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    repetition_penalty: float = 1.0  # 1.0: off
    n: int = 1  # independent samples
    seed: int | None = None
    stop: tuple[str, ...] = ()
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = True
    # Prompt-lookup decoding (greedy, one sample, decoder-only): guess up to this many next
    # tokens by finding the last few generated tokens earlier in the prompt, and check them
    # all in one forward pass. Same tokens as plain greedy decoding, fewer passes when the
    # answer copies the prompt (file names, paths, an example's command). 0: off.
    prompt_lookup: int = 0
    # Keep the state after the prompt's system turn in the runner's disk cache, for later
    # processes (engine.kvcache.DiskPrefixes). For prompts whose system turn is the same every
    # time and holds nothing of the user's (the suggest task's): not a cwd, not a request.
    keep_system_turn: bool = False
    # Report each sample's mean log-probability per token (`extra["mean_logprobs"]`, the
    # suggest task's certainty). Off unless asked: a softmax over the whole vocabulary every
    # step (~0.07 ms a token with GPT-2's 50k, in a 2 ms step).
    logprobs: bool = False

    def merged(self, **overrides: Any) -> GenerationConfig:
        """A copy with the non-None overrides applied (flags over descriptor defaults)."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "stop" in clean:
            clean["stop"] = tuple(clean["stop"])
        return replace(self, **clean)

    def validate(self) -> None:
        from shellfish.errors import UsageError

        if self.max_new_tokens < 1:
            raise UsageError("--max-tokens must be at least 1")
        if self.temperature < 0:
            raise UsageError("--temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise UsageError("--top-p must be in (0, 1]")
        if self.top_k < 0:
            raise UsageError("--top-k must be >= 0")
        if self.repetition_penalty <= 0:
            raise UsageError("--repetition-penalty must be > 0")
        if self.n < 1 or self.num_beams < 1:
            raise UsageError("-n and --beams must be at least 1")
        if not 0 <= self.prompt_lookup <= 64:
            raise UsageError("--prompt-lookup must be from 0 to 64")


@dataclass
class ModelInfo:
    """What a loaded model is (read from its manifest / descriptor and its ONNX graphs)."""

    name: str
    family: str  # seq2seq | causal | recurrent
    layout: str  # e.g. optimum-split, optimum-merged, genai, descriptor
    path: str
    context_length: int
    template: str = "plain"  # prompt template name, see engine.templates
    defaults: GenerationConfig = field(default_factory=GenerationConfig)
    providers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Runner(Protocol):
    """A loaded model. `generate` yields Token events then one Done (or raises ShellfishError)."""

    info: ModelInfo

    def generate(
        self,
        prompt: str,
        config: GenerationConfig,
        *,
        cancel: threading.Event | None = None,
    ) -> Iterator[Event]: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...
