"""The daemon end to end through a real (tiny, generated) ONNX GPT-2: no test doubles.

Invariants: the daemon's answer equals the same model run in this process; a repeated prompt
prefix is reused from the prefix cache of the warm model on the next request.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from test_daemon import Daemon, make_daemon  # noqa: F401  (fixture)

from shellfish.engine.base import GenerationConfig
from shellfish.events import Done, Token
from shellfish.request import TaskRequest

NAME = "tiny-gpt2"


def install_tiny_gpt2(fixtures: Path, home: Path) -> Path:
    dest = home / "data" / "models" / NAME
    shutil.copytree(fixtures / "gpt2", dest)
    (dest / "shellfish-model.json").write_text(
        json.dumps(
            {
                "name": NAME,
                "family": "causal",
                "template": "plain",
                "tasks": ["prompt", "suggest", "explain", "ask", "translate"],
                "files": {},
            }
        ),
        encoding="utf-8",
    )
    return dest


def test_daemon_streams_a_real_onnx_model(
    causal_models: Path,
    make_daemon: Callable[..., Daemon],  # noqa: F811
) -> None:
    daemon = make_daemon(start=False, fake=False)
    path = install_tiny_gpt2(causal_models, daemon.home)
    daemon.start()
    prefix = "list all files in the current directory, find large files, count lines. "
    generation = {"max_new_tokens": 8, "temperature": 0.0}
    first = list(
        daemon.client.stream(
            TaskRequest("prompt", prefix + "show disk usage", model=NAME, generation=generation)
        )
    )
    second = list(
        daemon.client.stream(
            TaskRequest("prompt", prefix + "compress a folder", model=NAME, generation=generation)
        )
    )
    for events in (first, second):
        done = events[-1]
        assert isinstance(done, Done) and done.backend == "daemon" and done.completion_tokens > 0
        assert "".join(e.text for e in events if isinstance(e, Token)) == done.text

    # the same model in this process gives the same greedy text
    from shellfish.engine.loader import load_model

    runner, _ = load_model(path, name=NAME)
    local = list(
        runner.generate(
            prefix + "show disk usage", GenerationConfig(max_new_tokens=8, temperature=0.0)
        )
    )
    assert isinstance(local[-1], Done) and local[-1].text == first[-1].text  # type: ignore[union-attr]

    # the warm daemon reused the shared prefix's KV state for the second request
    reused = second[-1].extra.get("prefix_reused_tokens", 0)  # type: ignore[union-attr]
    assert reused >= 10, second[-1]
    status = daemon.client.status()
    assert status["models"][0]["name"] == NAME and status["models"][0]["requests"] == 2

    # log-probabilities only when the request asks for them
    assert "mean_logprobs" not in first[-1].extra  # type: ignore[union-attr]
    asked = list(
        daemon.client.stream(
            TaskRequest(
                "prompt",
                prefix + "show disk usage",
                model=NAME,
                generation={**generation, "logprobs": True},
            )
        )
    )
    logprobs = asked[-1].extra["mean_logprobs"]  # type: ignore[union-attr]
    assert len(logprobs) == 1 and logprobs[0] < 0
