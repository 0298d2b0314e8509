"""A real daemon serving the EchoRunner test models in a temporary SHELLFISH_HOME (for the
daemon_load and daemon_soak benchmarks; not a benchmark itself).

The models come from tests/daemon_doubles.py through the daemon's `--loader`; each answer
takes `tokens` decode steps of `step_s` seconds. Nothing leaves the machine: a Unix socket.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"


@contextlib.contextmanager
def echo_daemon(step_s: float, tokens: int = 0) -> Iterator[tuple[Any, int]]:
    """Start the daemon; yield (paths, pid); stop it and remove the home afterwards.

    `tokens` 0: the models echo their prompt, one word per step.
    """
    sys.path.insert(0, str(TESTS))
    from daemon_doubles import install_fake_models

    from shellfish.client import lifecycle
    from shellfish.config import load_settings
    from shellfish.paths import get_paths

    home = Path(tempfile.mkdtemp(prefix="sfb-"))
    install_fake_models(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELLFISH_")}
    env.update(
        {
            "SHELLFISH_HOME": str(home),
            "PYTHONPATH": str(TESTS),
            "SHELLFISH_TEST_DELAY": str(step_s),
            "SHELLFISH_TEST_TOKENS": str(tokens),
        }
    )
    paths = get_paths(env)
    try:
        info = lifecycle.start(
            paths,
            load_settings(paths.config_file, env),
            environ=env,
            extra_args=["--loader", "daemon_doubles:loader_factory"],
            timeout_s=60,
        )
        yield paths, int(info["pid"])
    finally:
        lifecycle.stop(paths)
        shutil.rmtree(home, ignore_errors=True)
