"""Where shellfish keeps things.

`SHELLFISH_HOME` overrides every path (data, config, cache, runtime all live under it);
otherwise platformdirs picks the user's data / config / cache / runtime directories.

The runtime directory holds the daemon's socket and lock, so it must be the user's own. Without
`XDG_RUNTIME_DIR` platformdirs uses `/tmp/runtime-<uid>`, which anyone could have created first:
when that (or the XDG one) is not owned by the user or is writable by others, shellfish uses
`<cache dir>/run` instead and says so in `Paths.notes`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

APP = "shellfish"


@dataclass(frozen=True)
class Paths:
    data: Path
    config: Path
    cache: Path
    runtime: Path
    #: Things the user should be told about these paths (e.g. a runtime dir that was not ours).
    notes: tuple[str, ...] = ()

    @property
    def models(self) -> Path:
        return self.data / "models"

    @property
    def knowledge(self) -> Path:
        return self.data / "knowledge"

    @property
    def history_db(self) -> Path:
        return self.data / "history.sqlite3"

    @property
    def config_file(self) -> Path:
        return self.config / "config.toml"

    @property
    def socket(self) -> Path:
        return self.runtime / "daemon.sock"

    @property
    def daemon_state(self) -> Path:
        return self.runtime / "daemon.json"

    @property
    def daemon_log(self) -> Path:
        return self.cache / "daemon.log"

    @property
    def export_env(self) -> Path:
        """The isolated virtual environment that holds conversion-only packages."""
        return self.cache / "export-venv"


def get_paths(environ: dict[str, str] | None = None) -> Paths:
    env = os.environ if environ is None else environ
    home = env.get("SHELLFISH_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(
            data=root / "data",
            config=root / "config",
            cache=root / "cache",
            runtime=root / "run",
        )
    import warnings

    import platformdirs

    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-$UID (checked
        # below); the warning would be chatter on every command.
        warnings.simplefilter("ignore")
        runtime = Path(platformdirs.user_runtime_dir(APP))
    cache = Path(platformdirs.user_cache_dir(APP))
    notes: tuple[str, ...] = ()
    problem = unsafe_runtime_dir(runtime)
    if problem:
        fallback = cache / "run"
        notes = (f"{problem}; using {fallback} for the daemon socket instead",)
        runtime = fallback
    return Paths(
        data=Path(platformdirs.user_data_dir(APP)),
        config=Path(platformdirs.user_config_dir(APP)),
        cache=cache,
        runtime=runtime,
        notes=notes,
    )


def unsafe_runtime_dir(runtime: Path, uid: int | None = None) -> str | None:
    """Why `runtime` (`<base>/shellfish`) must not hold our socket, or None when it is fine.

    Checks the base directory (`$XDG_RUNTIME_DIR` or `/tmp/runtime-<uid>`) and `runtime` itself
    where they exist: each must be ours and not writable by group or others. A directory that
    does not exist yet is fine: `ensure_private_dir` creates it 0700.
    """
    uid = os.getuid() if uid is None else uid
    for directory in (runtime.parent, runtime):
        try:
            info = directory.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot use the runtime directory {directory}: {exc.strerror}"
        if not stat.S_ISDIR(info.st_mode):
            return f"the runtime directory {directory} is not a directory"
        if info.st_uid != uid:
            return f"the runtime directory {directory} belongs to another user (uid {info.st_uid})"
        if info.st_mode & 0o022:
            return f"the runtime directory {directory} is writable by other users"
    return None


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it private to the user (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
