"""`shellfish models import` of a transformers checkpoint: converted to int4 ONNX and usable.

The checkpoint is the tiny random Qwen2-style model of the causal fixtures; the conversion runs
the real onnxruntime-genai builder through the export worker (this interpreter stands in for
the export environment), and the installed model must load and generate in shellfish's runner.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from shellfish.cli import main
from shellfish.engine.base import GenerationConfig
from shellfish.engine.loader import load_model
from shellfish.errors import ExitStatus
from shellfish.events import Done

pytestmark = pytest.mark.slow  # a real builder run: tens of seconds on two cores


def test_import_a_transformers_checkpoint(causal_models: Path, make_env) -> None:
    env = make_env(SHELLFISH_EXPORT_PYTHON=sys.executable, SHELLFISH_NO_PROGRESS="1")
    argv = ["models", "import", str(causal_models / "qwen-hf"), "--name", "tiny-qwen"]
    assert main(argv, env) == ExitStatus.OK, env.stderr.getvalue()
    installed = env.paths.models / "tiny-qwen"
    manifest = json.loads((installed / "shellfish-model.json").read_text())
    assert manifest["family"] == "causal" and manifest["layout"] == "genai"
    runner, _ = load_model(installed)
    events = list(runner.generate("hello there", GenerationConfig(max_new_tokens=4)))
    assert isinstance(events[-1], Done) and events[-1].completion_tokens == 4


def test_import_of_a_checkpoint_missing_its_weights_installs_nothing(
    causal_models: Path,
    make_env,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken-hf"
    shutil.copytree(causal_models / "qwen-hf", broken)
    (broken / "model.safetensors").unlink()
    env = make_env(SHELLFISH_EXPORT_PYTHON=sys.executable, SHELLFISH_NO_PROGRESS="1")
    assert main(["models", "import", str(broken), "--name", "broken"], env) == ExitStatus.MODEL
    assert "\n" not in env.stderr.getvalue().strip()
    assert not (env.paths.models / "broken").exists()
