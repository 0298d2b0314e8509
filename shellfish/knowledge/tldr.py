"""tldr pages: download the official archive, parse its pages into (description, command) examples.

The archive (`tldr.zip` from the tldr-pages releases) holds ``pages/<platform>/<command>.md``
(and translated ``pages.<lang>/`` trees, which we skip). A page is a title, a short summary
(``> ...`` lines) and examples: ``- description:`` followed by a backticked command in which
``{{placeholders}}`` stand for arguments.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shellfish.errors import DownloadError, ShellfishError

DEFAULT_URL = "https://github.com/tldr-pages/tldr/releases/latest/download/tldr.zip"
PLATFORMS = {
    "linux": ("common", "linux"),
    "darwin": ("common", "osx"),
    "freebsd": ("common", "freebsd"),
}
MAX_BYTES = 64 * 1024 * 1024

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_ALTERNATIVES = re.compile(r"^\[([^\]|]+)\|[^\]]*\]$")
# {{on|off}}, {{name|id}}, --{{help|version}}: one word with choices, no brackets (1,600 of the
# shipped pages' placeholders). Written as it stands it would be a pipe: `set on|off`.
_BARE_ALTERNATIVES = re.compile(r"^([^\s|\[\]]+)(?:\|[^\s|\[\]]+)+$")


class KnowledgeError(ShellfishError):
    """The knowledge index or one of its sources is missing, corrupt or unreachable."""


class KnowledgeDownloadError(KnowledgeError, DownloadError):
    """A knowledge source could not be downloaded: the same exit status as a failed
    `shellfish models pull`, so scripts see one status for "the download failed"."""


@dataclass(frozen=True)
class Example:
    program: str
    platform: str
    description: str
    command: str


def first_alternative(inner: str) -> str | None:
    """The first choice of a placeholder that offers several, else None: ``[-C|--directory]``
    -> ``-C`` (an option, in its short spelling), ``on|off`` -> ``on``."""
    alt = _ALTERNATIVES.match(inner) or _BARE_ALTERNATIVES.match(inner)
    return alt.group(1) if alt else None


def _placeholder(match: re.Match[str]) -> str:
    inner = match.group(1)
    return first_alternative(inner) or inner


def parse_page(
    text: str,
    program: str,
    platform: str = "common",
    fill: Callable[[re.Match[str]], str] | None = None,
) -> list[Example]:
    """The examples of one tldr page (empty for a page without any).

    `fill` turns each ``{{placeholder}}`` into an argument (default: its text as written).
    """
    out: list[Example] = []
    description = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("- "):
            description = re.sub(r"\[(\w+)\]", r"\1", line[2:].rstrip(":").strip())
        elif line.startswith("`") and line.endswith("`") and len(line) > 2 and description:
            command = _PLACEHOLDER.sub(fill or _placeholder, line[1:-1]).strip()
            out.append(Example(program, platform, description, command))
            description = ""
    return out


def read_archive(
    path: Path,
    platforms: tuple[str, ...] = ("common", "linux"),
    fill: Callable[[re.Match[str]], str] | None = None,
) -> list[Example]:
    """All English examples of `platforms` in a tldr zip archive (`fill`: see parse_page)."""
    try:
        with zipfile.ZipFile(path) as zf:
            examples: list[Example] = []
            for name in zf.namelist():
                parts = name.split("/")
                if len(parts) != 3 or parts[0] != "pages" or not parts[2].endswith(".md"):
                    continue
                if parts[1] not in platforms:
                    continue
                text = zf.read(name).decode("utf-8", errors="replace")
                examples.extend(parse_page(text, parts[2][:-3], parts[1], fill))
            return examples
    except (zipfile.BadZipFile, OSError) as exc:
        raise KnowledgeError(
            f"the tldr archive {path} cannot be read: {exc}",
            hint="run `shellfish knowledge pull tldr` again",
        ) from exc


def download(url: str, dest: Path, *, timeout_s: float = 30.0) -> Path:
    """Fetch the archive at `url` into `dest` (atomically; the old copy survives a failure).

    `url` may also be a local path or a ``file://`` URL (an archive copied by hand, offline).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    local = _local_path(url)
    if local is not None:
        return _copy_local(local, tmp, dest)
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
            if response.status_code != 200:
                raise KnowledgeDownloadError(
                    f"downloading tldr pages from {url} failed: HTTP {response.status_code}",
                    hint="check the URL (--url or SHELLFISH_TLDR_URL) and try again",
                )
            size = 0
            with tmp.open("wb") as fh:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise KnowledgeDownloadError(
                            f"the tldr archive at {url} is larger than {MAX_BYTES} bytes"
                        )
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise KnowledgeDownloadError(
            f"downloading tldr pages from {url} failed: {exc}",
            hint="check the network and try again",
        ) from exc
    except KnowledgeError:
        tmp.unlink(missing_ok=True)
        raise
    if not zipfile.is_zipfile(tmp):
        tmp.unlink(missing_ok=True)
        raise KnowledgeDownloadError(f"{url} did not return a zip archive", hint="check the URL")
    tmp.replace(dest)
    return dest


def _local_path(url: str) -> Path | None:
    """The file `url` names when it is a path or a file:// URL, else None."""
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(url).path))
    if "://" in url:
        return None
    return Path(url).expanduser()


def _copy_local(source: Path, tmp: Path, dest: Path) -> Path:
    import shutil

    if not source.is_file():
        raise KnowledgeError(f"{source} does not exist", hint="give the path of a tldr zip archive")
    if source.stat().st_size > MAX_BYTES:
        raise KnowledgeError(f"the tldr archive {source} is larger than {MAX_BYTES} bytes")
    shutil.copyfile(source, tmp)
    if not zipfile.is_zipfile(tmp):
        tmp.unlink(missing_ok=True)
        raise KnowledgeError(f"{source} is not a zip archive", hint="check the path")
    tmp.replace(dest)
    return dest
