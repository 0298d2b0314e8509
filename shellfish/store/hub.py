"""Downloads from the Hugging Face Hub (or any server shaped like it: `HF_ENDPOINT`).

- metadata: `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` lists the files with
  their size, git blob id and, for LFS files, the LFS sha256;
- files: `GET {endpoint}/{repo}/resolve/{rev}/{path}`, resumed with `Range: bytes=N-` into a
  `.part` file when a connection drops (within one pull, and across pulls);
- `HF_TOKEN` is sent as a bearer token when set.

Every file is checked before use: against the descriptor's pinned sha256 when it has one, and
against the hub's own LFS sha256 (or git blob sha1 for small non-LFS files). A mismatch deletes
the partial file and raises HashMismatch.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from shellfish.errors import DownloadError, HashMismatch
from shellfish.store.store import CHUNK, disk_full_error, is_disk_full

DEFAULT_ENDPOINT = "https://huggingface.co"
Opener = Callable[[Path, str], IO[bytes]]  # (path, mode) -> binary file; tests inject failures


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str = ""  # LFS files
    blob_id: str = ""  # git blob sha1 (non-LFS files)


@dataclass(frozen=True)
class RepoInfo:
    repo: str
    revision: str
    commit: str
    files: dict[str, RemoteFile]


class HubClient:
    def __init__(
        self,
        environ: dict[str, str] | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        opener: Opener | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or ""
        self.timeout = timeout
        self.retries = retries
        self.opener: Opener = opener or (lambda p, mode: p.open(mode))

    # -- HTTP -------------------------------------------------------------------------------
    def _request(self, url: str, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(url, headers={"User-Agent": "shellfish", **(headers or {})})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise DownloadError(
                    f"{url}: access denied (HTTP {exc.code})",
                    hint="set HF_TOKEN to a token that can read this repository",
                ) from exc
            if exc.code == 404:
                raise DownloadError(
                    f"{url}: not found (HTTP 404)",
                    hint="check the repository, revision and HF_ENDPOINT",
                ) from exc
            raise DownloadError(
                f"{url}: HTTP {exc.code} {exc.reason}", hint="try again later"
            ) from exc
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(
                f"cannot reach {self.endpoint} ({reason})",
                hint="check your network, or set HF_ENDPOINT to a reachable mirror",
            ) from exc

    def repo_info(self, repo: str, revision: str) -> RepoInfo:
        quoted = urllib.parse.quote(revision, safe="")
        url = f"{self.endpoint}/api/models/{repo}/revision/{quoted}?blobs=true"
        with self._request(url) as resp:
            try:
                data = json.loads(resp.read())
            except ValueError as exc:
                raise DownloadError(
                    f"{url}: the hub's answer is not JSON", hint="check HF_ENDPOINT"
                ) from exc
        files = {}
        for s in data.get("siblings", []):
            lfs = s.get("lfs") or {}
            files[s["rfilename"]] = RemoteFile(
                path=s["rfilename"],
                size=int(lfs.get("size", s.get("size", 0)) or 0),
                sha256=str(lfs.get("sha256", "")),
                blob_id=str(s.get("blobId", "")),
            )
        return RepoInfo(repo, revision, str(data.get("sha", revision)), files)

    # -- download ---------------------------------------------------------------------------
    def download(
        self,
        repo: str,
        commit: str,
        remote: RemoteFile,
        dest: Path,
        *,
        pinned_sha256: str = "",
        pinned_size: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Fetch one file into `dest` (via `dest.part`, resuming), verify it, return dest."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        expected = pinned_size or remote.size
        url = f"{self.endpoint}/{repo}/resolve/{commit}/{urllib.parse.quote(remote.path)}"
        have = part.stat().st_size if part.exists() else 0
        if progress and have:
            progress(have)
        attempt = 0
        while True:
            if expected and have >= expected:
                break
            try:
                have = self._fetch_into(url, part, have, progress)
                if not expected or have >= expected:
                    break
                raise DownloadError(f"{url}: connection closed after {have} of {expected} bytes")
            except DownloadError as exc:
                attempt += 1
                have = part.stat().st_size if part.exists() else 0
                cause = exc.__cause__
                retryable = "connection closed" in exc.message or (
                    isinstance(cause, OSError) and not isinstance(cause, urllib.error.HTTPError)
                )
                if attempt > self.retries or not retryable:
                    raise DownloadError(
                        f"download of {remote.path} failed: {exc.message}",
                        hint=f"run the same command again to resume ({have} bytes kept)",
                    ) from exc
        self._verify(part, remote, pinned_sha256, expected)
        os.replace(part, dest)
        return dest

    def _fetch_into(
        self, url: str, part: Path, have: int, progress: Callable[[int], None] | None
    ) -> int:
        headers = {"Range": f"bytes={have}-"} if have else {}
        resp = self._request(url, headers)
        with resp:
            if have and resp.status != 206:  # server ignored Range: start over
                have = 0
            mode = "ab" if have else "wb"
            try:
                with self.opener(part, mode) as out:
                    while True:
                        try:
                            block = resp.read(CHUNK)
                        except (
                            OSError,
                            ValueError,
                            http.client.HTTPException,
                        ) as exc:  # dropped mid-body
                            raise DownloadError(
                                f"{url}: connection closed after {have} bytes"
                            ) from exc
                        if not block:
                            break
                        out.write(block)
                        have += len(block)
                        if progress:
                            progress(len(block))
            except OSError as exc:
                if is_disk_full(exc):
                    part.unlink(missing_ok=True)
                    raise disk_full_error(exc, part.parent) from exc
                raise DownloadError(
                    f"cannot write {part}: {exc.strerror or exc}",
                    hint="check the permissions of the models directory",
                ) from exc
        return have

    @staticmethod
    def _verify(part: Path, remote: RemoteFile, pinned_sha256: str, expected_size: int) -> None:
        size = part.stat().st_size
        problem = ""
        if expected_size and size != expected_size:
            problem = f"size {size} != expected {expected_size}"
        else:
            sha = hashlib.sha256()
            git = hashlib.sha1(f"blob {size}\0".encode())
            with part.open("rb") as fh:
                while block := fh.read(CHUNK):
                    sha.update(block)
                    git.update(block)
            got = sha.hexdigest()
            if pinned_sha256 and got != pinned_sha256:
                problem = f"sha256 {got[:12]}... != pinned {pinned_sha256[:12]}..."
            elif remote.sha256 and got != remote.sha256:
                problem = f"sha256 {got[:12]}... != hub's {remote.sha256[:12]}..."
            elif not remote.sha256 and remote.blob_id and git.hexdigest() != remote.blob_id:
                problem = f"git blob id {git.hexdigest()[:12]}... != hub's {remote.blob_id[:12]}..."
            elif not (pinned_sha256 or remote.sha256 or remote.blob_id):
                problem = "no hash to check it against (neither pinned nor given by the hub)"
        if problem:
            part.unlink(missing_ok=True)
            raise HashMismatch(
                f"{remote.path}: {problem} - the file is corrupt or was changed",
                hint="nothing was installed; pull again, or report the mirror",
            )
