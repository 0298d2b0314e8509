"""`shellfish tune --device cuda`: the training worker on a GPU (skipped where there is none).

The worker is run as the conversion environment runs it, on a tiny random-weight Qwen2
model: bf16 autocast on CUDA, loss going down, a checkpoint that resumes after an interrupt,
and an adapter that merges on the CPU into the same function the GPU trained. It needs only
torch, transformers, safetensors and tokenizers (no shellfish imports, no ONNX), so it also runs
on a bare GPU machine: `python -m pytest --noconftest tests/test_tune_cuda.py`.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "shellfish" / "tune" / "worker.py"
PAIRS = [
    ("list all files", "ls -a"),
    ("show disk usage of this folder", "du -sh ."),
    ("count lines in notes.txt", "wc -l notes.txt"),
    ("find python files", "find . -name '*.py'"),
    ("print the working directory", "pwd"),
    ("compress logs into logs.tar.gz", "tar -czf logs.tar.gz logs"),
]


def _cuda() -> Any:
    torch = pytest.importorskip("torch", reason="the tuning worker needs torch")
    pytest.importorskip("transformers", reason="the tuning worker needs transformers")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here (this checks `shellfish tune --device cuda`)")
    return torch


def _fixture_builder() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_causal", ROOT / "tests" / "fixtures" / "build_causal.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The causal fixtures' tiny Qwen2 model and tokenizer (built here: no ONNX export)."""
    _cuda()
    builder = _fixture_builder()
    out = tmp_path_factory.mktemp("tiny-qwen")
    vocab = builder.build_tokenizer(out)
    builder.tiny_qwen(out, vocab).save_pretrained(out)
    return out


def _train(base: Path, tmp: Path, steps: int) -> list[str]:
    data = tmp / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"Q: {r}\nA:", "completion": f" {c}"}) + "\n" for r, c in PAIRS
        )
    )
    return [
        sys.executable,
        str(WORKER),
        "train",
        *("--base", str(base), "--data", str(data), "--work", str(tmp / "work")),
        *("--device", "cuda", "--bf16", "--lr", "1e-2", "--epochs", "100"),
        *("--max-steps", str(steps), "--batch-tokens", "256", "--save-every", "1000"),
    ]


def test_training_on_cuda_learns_resumes_and_merges_on_cpu(tiny_qwen: Path, tmp_path: Path) -> None:
    torch = _cuda()
    cmd = _train(tiny_qwen, tmp_path, 40)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = 0
    for line in proc.stderr:
        if line.startswith("@@progress "):
            seen += 1
            if seen == 5:
                proc.send_signal(signal.SIGINT)
                break
    _, rest = proc.communicate(timeout=300)
    assert proc.returncode == 130, rest[-2000:]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "@@resumed" in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == 40
    losses = [
        json.loads(x.split(" ", 1)[1])["loss"]
        for x in done.stderr.splitlines()
        if x.startswith("@@progress ")
    ]
    assert sum(losses[-5:]) / 5 < losses[0] - 0.25, losses  # CPU, same run: 6.29 -> 0.001

    # The adapter the GPU trained, merged on the CPU, gives the model the GPU trained.
    merged = tmp_path / "merged"
    merge = subprocess.run(
        [
            *(sys.executable, str(WORKER), "merge", "--base", str(tiny_qwen)),
            *("--adapter", str(tmp_path / "work" / "adapter"), "--out", str(merged)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert merge.returncode == 0, merge.stderr[-2000:]
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen).eval()
    tuned = AutoModelForCausalLM.from_pretrained(merged).eval()
    adapter = load_file(str(tmp_path / "work" / "adapter" / "adapter.safetensors"))
    meta = json.loads((tmp_path / "work" / "adapter" / "adapter.json").read_text())
    scale = meta["alpha"] / meta["rank"]
    name = "model.layers.0.self_attn.q_proj"
    a, b = adapter[f"{name}.lora_a"].float(), adapter[f"{name}.lora_b"].float()
    expected = base.get_submodule(name).weight + scale * (b @ a)
    torch.testing.assert_close(tuned.get_submodule(name).weight, expected, atol=1e-5, rtol=0)
    assert not torch.equal(tuned.get_submodule(name).weight, base.get_submodule(name).weight)
