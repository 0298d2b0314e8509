"""The model store: installed models under `paths.models`, installed atomically.

An installed model is a directory `<models>/<name>/` holding its ONNX and tokenizer files and
a manifest `shellfish-model.json` (see MANIFEST_KEYS). Installs are built in a staging
directory `<models>/.staging-<name>-<random>/` on the same filesystem, verified, the manifest
written last, and then renamed into place - so a directory without a manifest, or a staging
directory, is never taken for an installed model, and an interrupted pull leaves nothing that
looks installed. Partial downloads live in `<models>/.downloads/<name>/` so a later pull resumes.

Every install holds `lock(name)` (an flock on `<models>/.lock-<name>`) while its staging and
work directories (`.staging-`, `.work-`, and `.trash-`/`.old-` while removing or replacing)
exist, so a leftover whose name's lock is free belongs to a process that died: `sweep` removes
those, and every new install sweeps first. A damaged model (manifest missing, corrupt or
malformed) is never loaded, but `remove` still deletes its directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shellfish.errors import ModelError, ModelNotFound
from shellfish.paths import Paths
from shellfish.store.catalog import Catalog, default_catalog_dirs

MANIFEST = "shellfish-model.json"
MANIFEST_KEYS = (
    "name",
    "family",
    "layout",
    "template",
    "context_length",
    "generation",
    "tasks",
    "files",
    "source",
)
CHUNK = 1 << 20
# Names are directory names: no separators, no leading dot (hidden: staging, locks) or dash.
VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# Directories an install or removal keeps only while it holds the name's lock.
LEFTOVER_PREFIXES = (".staging-", ".work-", ".trash-", ".old-")


def check_name(name: str) -> str:
    """`name` when it is a valid model name, else a ModelError (never a path outside the store)."""
    if not isinstance(name, str) or not VALID_NAME.fullmatch(name) or ".." in name:
        raise ModelError(
            f"invalid model name {name!r}",
            hint="use letters, digits, . - _ + (starting with a letter or digit)",
        )
    return name


class DiskFull(ModelError):
    """The disk filled up while writing a model; nothing was installed."""


def disk_full_error(exc: OSError, where: Path) -> DiskFull:
    return DiskFull(
        f"no space left on the device holding {where} ({exc.strerror})",
        hint="free some space (or set SHELLFISH_HOME to a bigger disk) and pull again; "
        "nothing was installed",
    )


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    manifest: dict[str, Any]

    @property
    def family(self) -> str:
        return str(self.manifest.get("family", "?"))

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest.get("tasks", []))

    @property
    def layout(self) -> str:
        return str(self.manifest.get("layout", "?"))

    def size_on_disk(self) -> int:
        return dir_size(self.path)

    def files(self) -> tuple[dict[str, str], dict[str, int]]:
        """The manifest's {file: sha256} and {file: size}; ModelError when they are malformed.

        A hand-edited or truncated manifest must give a clear error, not a traceback, and must
        never make a check read a file outside the model's directory.
        """
        files = self.manifest.get("files", {})
        sizes = self.manifest.get("sizes", {})
        well_formed = (
            isinstance(files, dict)
            and isinstance(sizes, dict)
            and all(_inside(rel) and isinstance(d, str) for rel, d in files.items())
            and all(isinstance(n, int) and not isinstance(n, bool) for n in sizes.values())
        )
        if not well_formed:
            raise ModelError(
                f"model {self.name!r} has a malformed manifest ({self.path / MANIFEST})",
                hint=f"run `shellfish models rm {self.name}` and pull or import it again",
            )
        return files, sizes

    def missing_files(self) -> list[str]:
        """Manifest files that are absent or have the wrong size (cheap: no hashing)."""
        missing = []
        files, sizes = self.files()
        for rel in files:
            p = self.path / rel
            if not p.is_file() or (rel in sizes and p.stat().st_size != sizes[rel]):
                missing.append(rel)
        return missing

    def check(self) -> None:
        """Raise ModelError when a file listed in the manifest is gone or truncated."""
        missing = self.missing_files()
        if missing:
            raise ModelError(
                f"model {self.name!r} is damaged: {', '.join(missing[:3])} "
                f"{'is' if len(missing) == 1 else 'are'} missing or truncated",
                hint=f"run `shellfish models pull {self.name} --force` (or `shellfish models rm "
                f"{self.name}`)",
            )

    def verify(self, progress: Callable[[int], None] | None = None) -> list[str]:
        """Full check: hash every file; returns the files whose sha256 differs from the manifest."""
        bad = self.missing_files()
        for rel, digest in self.files()[0].items():
            if rel in bad:
                continue
            if sha256_file(self.path / rel, progress) != digest:
                bad.append(rel)
        return bad


def _inside(rel: object) -> bool:
    """Whether a manifest path is relative and stays inside the model directory."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel:
        return False
    return ".." not in rel.split("/")


def hash_tree(
    root: Path, progress: Callable[[int], None] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """sha256 and size of every file under root (relative POSIX paths), the manifest excluded."""
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(root).as_posix()
            files[rel] = sha256_file(p, progress)
            sizes[rel] = p.stat().st_size
    return files, sizes


class Staging:
    """A directory being filled with a model; `commit` makes it installed, atomically."""

    def __init__(self, store: Store, name: str, path: Path) -> None:
        self.store = store
        self.name = name
        self.path = path

    def commit(
        self,
        manifest: dict[str, Any],
        *,
        replace: bool = False,
        progress: Callable[[int], None] | None = None,
        validator: Callable[[Path, str], list[str]] | None = None,
    ) -> InstalledModel:
        """Hash the files, write the manifest, run `validator(dir, name)` (a smoke load that
        raises ModelError), then rename into place. Its warnings go into the manifest."""
        missing = [k for k in MANIFEST_KEYS if k not in manifest and k != "files"]
        if missing:
            raise ModelError(f"internal: manifest lacks {', '.join(missing)}")
        files, sizes = hash_tree(self.path, progress)
        if not files:
            raise ModelError(f"nothing to install for {self.name!r}")
        manifest = {**manifest, "name": self.name, "files": files, "sizes": sizes}
        self._write_manifest(manifest)
        if validator is not None:
            warnings = validator(self.path, self.name)
            if warnings:
                manifest["warnings"] = list(warnings)
                self._write_manifest(manifest)
        final = self.store.root / self.name
        old: Path | None = None
        if final.exists():
            if not replace:
                raise ModelError(
                    f"model {self.name!r} is already installed",
                    hint=f"use --force to replace it, or `shellfish models rm {self.name}`",
                )
            old = self.store.root / f".old-{self.name}-{os.getpid()}"
            os.replace(final, old)
        os.replace(self.path, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return InstalledModel(self.name, final, manifest)

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        try:
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path / MANIFEST)  # manifest last
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(exc, self.path) from exc
            raise


class Store:
    """Installed models under `paths.models` (`SHELLFISH_HOME` overrides the location)."""

    def __init__(self, paths: Paths, catalog: Catalog | None = None) -> None:
        self.paths = paths
        self.root = paths.models
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog.load(default_catalog_dirs(self.paths.config))
        return self._catalog

    def downloads_dir(self, name: str) -> Path:
        return self.root / ".downloads" / name

    # -- reading ----------------------------------------------------------------------------
    def _load(self, path: Path) -> InstalledModel | None:
        manifest_path = path / MANIFEST
        if path.name.startswith(".") or not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict):
            return None
        # The directory is the name: a manifest's own `name` may be stale or hand-edited.
        return InstalledModel(path.name, path, manifest)

    def installed(self) -> list[InstalledModel]:
        if not self.root.is_dir():
            return []
        found = (self._load(p) for p in sorted(self.root.iterdir()) if p.is_dir())
        return [m for m in found if m is not None]

    def get(self, name: str) -> InstalledModel | None:
        return self._load(self.root / name) if name and "/" not in name else None

    def damaged_dir(self, name: str) -> Path | None:
        """The directory of `name` when it exists but its manifest is missing or unreadable."""
        if not name or not VALID_NAME.fullmatch(name):
            return None
        path = self.root / name
        return path if path.is_dir() and self._load(path) is None else None

    def resolve(self, name_or_alias: str) -> InstalledModel:
        """The installed model called (or aliased) `name_or_alias`; checks its files exist."""
        model = self.get(name_or_alias)
        if model is None:
            desc = self.catalog.find(name_or_alias)
            if desc is None:
                raise ModelNotFound(
                    f"unknown model {name_or_alias!r}",
                    hint="`shellfish models list` shows the catalog",
                )
            model = self.get(desc.name)
            if model is None:
                raise ModelNotFound(
                    f"model {desc.name!r} is not installed",
                    hint=f"run `shellfish models pull {desc.name}`",
                )
        model.check()
        return model

    # -- writing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive lock on `name` so two pulls of one model never interleave."""
        check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / f".lock-{name}"
        with lock_path.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ModelError(
                    f"another shellfish process is installing {name!r}",
                    hint="wait for it to finish and try again",
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def staging(self, name: str) -> Iterator[Staging]:
        """A fresh staging dir for `name`; removed on any failure (or if never committed).

        The caller holds `lock(name)`; leftovers of earlier crashed attempts are cleared first.
        """
        check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep(held=name)
        path = Path(tempfile.mkdtemp(prefix=f".staging-{name}-", dir=self.root))
        try:
            yield Staging(self, name, path)
        finally:
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)

    def sweep(self, *, held: str | None = None) -> list[Path]:
        """Remove staging/work/trash directories left by processes that died; returns them.

        A leftover is stale when its model's lock is free (its owner held the lock for as
        long as the directory was meant to live); `held` names the lock the caller holds, whose
        leftovers are stale by definition. Those of an install in progress are kept.
        """
        if not self.root.is_dir():
            return []
        by_name: dict[str, list[Path]] = {}
        for entry in self.root.iterdir():
            prefix = next((p for p in LEFTOVER_PREFIXES if entry.name.startswith(p)), None)
            name = entry.name[len(prefix) :].rpartition("-")[0] if prefix else ""
            if name and VALID_NAME.fullmatch(name) and entry.is_dir():
                by_name.setdefault(name, []).append(entry)
        removed: list[Path] = []
        for name, entries in sorted(by_name.items()):
            with contextlib.ExitStack() as stack:
                if name != held:
                    try:
                        stack.enter_context(self.lock(name))
                    except ModelError:
                        continue  # in progress in another process
                for entry in entries:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        return removed

    def remove(self, name_or_alias: str) -> Path:
        """Delete an installed model, also one whose manifest is missing or corrupt."""
        model = self.get(name_or_alias)
        if model is None:
            desc = self.catalog.find(name_or_alias)
            model = self.get(desc.name) if desc else None
        path = model.path if model is not None else self.damaged_dir(name_or_alias)
        if path is None:
            raise ModelNotFound(
                f"model {name_or_alias!r} is not installed",
                hint="`shellfish models list` shows what is installed",
            )
        name = path.name
        with self.lock(name):
            trash = self.root / f".trash-{name}-{os.getpid()}"
            os.replace(path, trash)  # atomic: it stops looking installed at once
            shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(self.downloads_dir(name), ignore_errors=True)
        return path
