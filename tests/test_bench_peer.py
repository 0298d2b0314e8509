"""Building the llama.cpp peer in the background, its GGUF, and how the bench finds both.

No test compiles anything: pip and the detached process are replaced by recorders; the
real build is `shellfish bench --build-peer llama.cpp` (README, "Measured").
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from shellfish.bench import peer_build
from shellfish.bench.gguf import header_value, quant_name
from shellfish.bench.harness import _worker_env
from shellfish.errors import ModelError, UsageError
from shellfish.paths import get_paths


@pytest.fixture
def paths(tmp_path: Path):
    return get_paths({"SHELLFISH_HOME": str(tmp_path / "home")})


class FakePopen:
    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, command: list[str], **kw: Any) -> None:
        import os

        FakePopen.calls.append({"command": command, **kw})
        self.pid = os.getpid()  # a live process, so the build reads as still running


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the pid no longer exists
    return proc.pid


def test_start_runs_detached_at_lowest_priority_and_only_once(paths) -> None:
    FakePopen.calls = []
    status = peer_build.start_build("llama.cpp", paths, {"PATH": "/bin"}, popen=FakePopen)
    assert status.state == "building"
    (call,) = FakePopen.calls
    assert call["command"][:3] == ["nice", "-n", "19"]
    assert call["command"][-3:] == ["llama.cpp", "--jobs", "2"]
    assert call["start_new_session"] is True  # not killed with the CLI that started it
    again = peer_build.start_build("llama.cpp", paths, {}, popen=FakePopen)
    assert again.state == "building" and len(FakePopen.calls) == 1
    assert "still building" in again.describe()


def test_a_build_whose_process_is_gone_reads_as_interrupted(paths) -> None:
    state = peer_build.peers_dir(paths) / "llama.cpp.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"name": "llama.cpp", "state": "building", "pid": _dead_pid()}))
    status = peer_build.build_status("llama.cpp", paths)
    assert status.state == "interrupted"
    assert "interrupted" in status.describe()
    # and it may be started again
    FakePopen.calls = []
    peer_build.start_build("llama.cpp", paths, {}, popen=FakePopen)
    assert len(FakePopen.calls) == 1


def test_run_build_compiles_then_installs_into_the_overlay(paths) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []

    def run(command: list[str], *, env: dict[str, str], **kw: Any) -> Any:
        seen.append((command, env))
        if command[3] == "wheel":
            wheels = Path(command[command.index("-w") + 1])
            wheels.mkdir(parents=True, exist_ok=True)
            (wheels / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
        return SimpleNamespace(returncode=0)

    status = peer_build.run_build("llama.cpp", paths, {"CMAKE_ARGS": "-DX=1"}, run=run)
    assert status.state == "done" and status.wheel and status.wheel.endswith(".whl")
    assert [c[3] for c, _ in seen] == ["wheel", "install", "install"]
    env = seen[0][1]
    assert "-DGGML_NATIVE=ON" in env["CMAKE_ARGS"] and env["CMAKE_ARGS"].endswith("-DX=1")
    assert env["CMAKE_BUILD_PARALLEL_LEVEL"] == "2"
    assert str(peer_build.overlay_dir(paths, "llama.cpp")) in seen[1][0]
    assert peer_build.build_status("llama.cpp", paths).state == "done"
    # a second build reuses the cached wheel instead of compiling again
    seen.clear()
    peer_build.run_build("llama.cpp", paths, {}, run=run)
    assert [c[3] for c, _ in seen] == ["install", "install"]


def test_a_failed_compile_is_recorded_not_raised(paths) -> None:
    def run(command: list[str], **kw: Any) -> Any:
        return SimpleNamespace(returncode=1)

    status = peer_build.run_build("llama.cpp", paths, {}, run=run)
    assert status.state == "failed" and status.returncode == 1
    assert "pip wheel" in status.describe()


def test_unknown_peer_is_a_usage_error(paths) -> None:
    with pytest.raises(UsageError):
        peer_build.build_status("vllm", paths)


def test_worker_env_puts_the_built_overlay_first(paths, tmp_path: Path) -> None:
    environ = {"SHELLFISH_HOME": str(tmp_path / "home"), "PYTHONPATH": "/x"}
    assert _worker_env("llama.cpp", environ)["PYTHONPATH"] == "/x"  # nothing built yet
    overlay = peer_build.overlay_dir(paths, "llama.cpp")
    overlay.mkdir(parents=True)
    assert _worker_env("llama.cpp", environ)["PYTHONPATH"].split(":")[0] == str(overlay)
    other = tmp_path / "elsewhere"
    other.mkdir()
    environ["SHELLFISH_BENCH_LLAMA_CPP"] = str(other)
    assert _worker_env("llama.cpp", environ)["PYTHONPATH"].split(":")[0] == str(other)


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is not None, reason="llama_cpp is importable here"
)
def test_the_engine_says_how_the_build_stands(tmp_path: Path, monkeypatch) -> None:
    from shellfish.bench.engines.base import EngineUnavailable
    from shellfish.bench.engines.llama_cpp import LlamaCppEngine
    from shellfish.bench.models import BenchModel

    monkeypatch.setenv("SHELLFISH_HOME", str(tmp_path / "home"))
    model = BenchModel(name="m", family="causal", root=str(tmp_path), vocab_size=10, gguf="x")
    with pytest.raises(EngineUnavailable, match=r"not built .*--build-peer llama\.cpp"):
        LlamaCppEngine(model, 1).check()


def _gguf(path: Path, kvs: list[tuple[str, int, bytes]]) -> Path:
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, kind, value in kvs:
        body += s(key) + struct.pack("<I", kind) + value
    path.write_bytes(body)
    return path


def test_quant_is_read_from_the_gguf_header(tmp_path: Path) -> None:
    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    tokens = struct.pack("<IQ", 8, 3) + s("a") + s("bb") + s("<|im_end|>")
    path = _gguf(
        tmp_path / "m.gguf",
        [
            ("general.name", 8, s("Tiny")),
            ("tokenizer.ggml.tokens", 9, tokens),  # an array of strings to skip over
            ("qwen2.context_length", 4, struct.pack("<I", 32768)),
            ("general.file_type", 4, struct.pack("<I", 15)),
        ],
    )
    assert header_value(path, "general.name") == "Tiny"
    assert header_value(path, "qwen2.context_length") == 32768
    assert header_value(path, "missing") is None
    assert quant_name(path) == "Q4_K_M"
    assert quant_name(_gguf(tmp_path / "n.gguf", [])) == "gguf"
    (tmp_path / "bad.gguf").write_bytes(b"NOPE")
    with pytest.raises(ModelError):
        quant_name(tmp_path / "bad.gguf")


def test_an_int4_only_bench_takes_ratios_against_shellfish_int4() -> None:
    from shellfish.bench import report
    from shellfish.bench.results import BenchResult, EngineResult
    from shellfish.bench.spec import Plan

    def points(ttft: dict[int, float], total16: float) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {
            f"c{c}-n1": {"context": c, "new_tokens": 1, "times_ms": [t], "median_ms": t}
            for c, t in ttft.items()
        }
        out["c16-n16"] = {"context": 16, "new_tokens": 16, "times_ms": [0], "median_ms": total16}
        return out

    ours = EngineResult(
        "shellfish-int4",
        points=points({16: 10.0, 128: 40.0}, 40.0),
        load_ms=500.0,
        peak_rss_mb=600.0,
        load_avg=[15.2, 16.04],
    )
    peer = EngineResult(
        "llama.cpp",
        points=points({16: 5.0, 128: 60.0}, 55.0),
        load_ms=250.0,
        peak_rss_mb=900.0,
    )
    missing = EngineResult("ort-genai-int4", status="unavailable", reason="not installed")
    result = BenchResult(model={"name": "q"}, plan=Plan().to_dict(), engines=[missing, ours, peer])
    assert result.reference is ours
    header, rows = report.ratios_rows(result)
    assert header == ["engine", "load", "TTFT ctx 16", "TTFT ctx 128", "decode", "RSS"]
    # decode: (55 - 5) / 15 over (40 - 10) / 15
    assert rows == [["llama.cpp", "0.50x", "0.50x", "1.50x", "1.67x", "1.50x"]]
    header, rows = report.summary_rows(result)
    assert rows[0][header.index("load avg")] == "15.2 -> 16.0"
    assert "Ratios (peer / shellfish-int4" in report.markdown(result)


def test_cli_build_peer_starts_once_and_reports(make_env, monkeypatch) -> None:
    from shellfish.cli import main

    started: list[str] = []

    def fake_start(name: str, paths: Any, environ: dict[str, str], **kw: Any) -> Any:
        started.append(name)
        status = peer_build.BuildStatus(name=name, state="building", pid=1, started=0.0)
        peer_build._write(paths, status)
        return status

    monkeypatch.setattr(peer_build, "start_build", fake_start)
    env = make_env()
    assert main(["bench", "--build-peer", "llama.cpp"], env) == 0, env.stderr.getvalue()
    assert started == ["llama.cpp"] and "still building" in env.stdout.getvalue()
    paths = get_paths(env.environ)
    done = peer_build.BuildStatus(name="llama.cpp", state="done", wheel="/w.whl")
    peer_build._write(paths, done)
    env = make_env()
    assert main(["bench", "--build-peer", "llama.cpp"], env) == 0
    assert started == ["llama.cpp"]  # not started again
    assert "built (/w.whl)" in env.stdout.getvalue()
    env = make_env()
    assert main(["bench", "--build-peer", "vllm"], env) != 0
    assert "no buildable peer" in env.stderr.getvalue()
