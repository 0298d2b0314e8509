"""Build a bench peer that PyPI ships only as source (llama-cpp-python), in the background.

The build is long (C++ compiled on this machine, for this CPU) so it is started detached at
the lowest priority (`nice -n 19`) and never waited on: `start_build` returns at once and
`build_status` tells later whether it finished. The wheel is cached under the user cache dir
(`SHELLFISH_HOME` overrides, see `shellfish.paths`) in `peers/wheels/`, and installed into an
overlay directory `peers/<name>/site` that the bench worker puts first on its PYTHONPATH, so the
project's own virtual environment is never modified.

State lives in `peers/<name>.json`: {"state": "building"|"done"|"failed", "pid", "started",
"finished", "returncode", "wheel", "log"}. A "building" state whose process is gone (machine
rebooted, build killed) reads as "interrupted": a build that did not finish is reported as
such, never as a crash and never as done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shellfish.errors import UsageError
from shellfish.paths import Paths


@dataclass(frozen=True)
class PeerSpec:
    """How to build one peer: a pip requirement compiled from its sdist with CMake options."""

    name: str
    requirement: str
    module: str  # the import name the bench engine needs
    cmake_args: tuple[str, ...]
    extra_packages: tuple[str, ...] = ()  # pure-Python run-time dependencies for the overlay


PEERS: dict[str, PeerSpec] = {
    "llama.cpp": PeerSpec(
        name="llama.cpp",
        requirement="llama-cpp-python==0.3.36",
        module="llama_cpp",
        # GGML_NATIVE: -march=native, i.e. the SIMD this CPU has (AVX2/AVX-512/VNNI), which is
        # what a user building it here would get. No curl (no network use in the bench), no
        # BLAS (llama.cpp's own kernels are what people run on CPU).
        cmake_args=("-DGGML_NATIVE=ON", "-DGGML_BLAS=OFF", "-DLLAMA_CURL=OFF"),
        extra_packages=("diskcache",),
    ),
}


@dataclass
class BuildStatus:
    name: str
    state: str = "absent"  # absent | building | done | failed | interrupted
    pid: int | None = None
    started: float | None = None
    finished: float | None = None
    returncode: int | None = None
    wheel: str | None = None
    log: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.state == "done":
            return f"{self.name}: built ({self.wheel})"
        if self.state == "building":
            mins = (time.time() - (self.started or time.time())) / 60
            return (
                f"{self.name}: still building (pid {self.pid}, {mins:.0f} min so far; "
                f"log {self.log})"
            )
        if self.state == "absent":
            return f"{self.name}: not built (run `shellfish bench --build-peer {self.name}`)"
        return f"{self.name}: build {self.state} {self.detail} (log {self.log})".replace("  ", " ")


def spec(name: str) -> PeerSpec:
    if name not in PEERS:
        raise UsageError(f"no buildable peer {name!r}", hint=f"choose from {', '.join(PEERS)}")
    return PEERS[name]


def peers_dir(paths: Paths) -> Path:
    return paths.cache / "peers"


def wheels_dir(paths: Paths) -> Path:
    return peers_dir(paths) / "wheels"


def overlay_dir(paths: Paths, name: str) -> Path:
    """Where the built peer is installed (put first on the bench worker's PYTHONPATH)."""
    return peers_dir(paths) / name / "site"


def _state_file(paths: Paths, name: str) -> Path:
    return peers_dir(paths) / f"{name}.json"


def _log_file(paths: Paths, name: str) -> Path:
    return peers_dir(paths) / f"{name}.build.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not building any more.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _write(paths: Paths, status: BuildStatus) -> None:
    path = _state_file(paths, status.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status.to_dict(), indent=1))
    tmp.replace(path)


def build_status(name: str, paths: Paths) -> BuildStatus:
    """The recorded state, with a dead "building" process read as "interrupted"."""
    spec(name)
    try:
        data = json.loads(_state_file(paths, name).read_text())
    except (OSError, ValueError):
        return BuildStatus(name=name)
    status = BuildStatus(**{k: v for k, v in data.items() if k in BuildStatus.__dataclass_fields__})
    if status.state == "building" and (status.pid is None or not _alive(status.pid)):
        status.state = "interrupted"
        status.detail = "(the build process is gone without recording an end)"
    return status


def cmake_env(peer: PeerSpec, base: dict[str, str], jobs: int) -> dict[str, str]:
    env = dict(base)
    env["CMAKE_ARGS"] = " ".join([*peer.cmake_args, env.get("CMAKE_ARGS", "")]).strip()
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(jobs)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def build_commands(peer: PeerSpec, paths: Paths, python: str = sys.executable) -> list[list[str]]:
    """The pip steps: compile the wheel into the cache, then install it into the overlay."""
    wheels = str(wheels_dir(paths))
    site = str(overlay_dir(paths, peer.name))
    return [
        [python, "-m", "pip", "wheel", "--no-deps", "-w", wheels, peer.requirement],
        [python, "-m", "pip", "install", "--no-deps", "--upgrade", "--target", site,
         "--find-links", wheels, "--no-index", peer.requirement],
        *([[python, "-m", "pip", "install", "--no-deps", "--upgrade", "--target", site,
            *peer.extra_packages]] if peer.extra_packages else []),
    ]  # fmt: skip


def _find_wheel(paths: Paths, peer: PeerSpec) -> str | None:
    dist = peer.requirement.split("==")[0].replace("-", "_")
    version = peer.requirement.split("==")[1] if "==" in peer.requirement else ""
    found = sorted(wheels_dir(paths).glob(f"{dist}-{version}*.whl"))
    return str(found[-1]) if found else None


Runner = Callable[..., Any]


def run_build(
    name: str, paths: Paths, environ: dict[str, str], *, jobs: int = 2, run: Runner = subprocess.run
) -> BuildStatus:
    """Build in this process (what the detached child runs) and record how it ended."""
    peer = spec(name)
    log = _log_file(paths, name)
    status = build_status(name, paths)
    status.state, status.pid, status.log = "building", os.getpid(), str(log)
    status.started = status.started or time.time()
    _write(paths, status)
    wheel = _find_wheel(paths, peer)
    env = cmake_env(peer, environ, jobs)
    with open(log, "a") as out:
        for command in build_commands(peer, paths):
            if wheel and command[3] == "wheel":
                out.write(f"# cached wheel {wheel}: not rebuilt\n")
                continue
            out.write(f"# {' '.join(command)}\n# CMAKE_ARGS={env['CMAKE_ARGS']}\n")
            out.flush()
            done = run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
            if done.returncode != 0:
                status.state, status.returncode = "failed", done.returncode
                status.detail = f"(`{' '.join(command[2:4])}` exited {done.returncode})"
                break
            wheel = wheel or _find_wheel(paths, peer)
        else:
            status.state, status.returncode, status.wheel = "done", 0, wheel
    status.finished = time.time()
    _write(paths, status)
    return status


def start_build(
    name: str,
    paths: Paths,
    environ: dict[str, str],
    *,
    jobs: int = 2,
    popen: Runner = subprocess.Popen,
    python: str = sys.executable,
) -> BuildStatus:
    """Start `run_build` detached under `nice -n 19` and return at once (never blocks).

    A build already running is not started twice; a finished one is not redone.
    """
    peer = spec(name)
    current = build_status(name, paths)
    if current.state in {"building", "done"}:
        return current
    peers_dir(paths).mkdir(parents=True, exist_ok=True)
    log = _log_file(paths, name)
    command = ["nice", "-n", "19", python, "-m", "shellfish.bench.peer_build", peer.name,
               "--jobs", str(jobs)]  # fmt: skip
    with open(log, "a") as out:
        out.write(f"# started {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n")
        out.flush()
        child = popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(environ),
            start_new_session=True,  # survives the CLI that started it (and its Ctrl-C)
        )
    status = BuildStatus(
        name=name, state="building", pid=child.pid, started=time.time(), log=str(log)
    )
    _write(paths, status)
    return status


def main(argv: list[str] | None = None) -> int:
    import argparse

    from shellfish.paths import get_paths

    parser = argparse.ArgumentParser(description="build a bench peer (foreground)")
    parser.add_argument("name", choices=sorted(PEERS))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    status = run_build(args.name, get_paths(), dict(os.environ), jobs=args.jobs)
    print(status.describe())
    return 0 if status.state == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
