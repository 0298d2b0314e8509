"""Where shellfish keeps things.

`SHELLFISH_HOME` overrides every path (data, config, cache, runtime all live under it);
otherwise platformdirs picks the user's data / config / cache / runtime directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP = "shellfish"


@dataclass(frozen=True)
class Paths:
    data: Path
    config: Path
    cache: Path
    runtime: Path

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
        # Without XDG_RUNTIME_DIR platformdirs warns and falls back to /tmp/runtime-$UID, which
        # is what we want; the warning would be chatter on every command.
        warnings.simplefilter("ignore")
        runtime = Path(platformdirs.user_runtime_dir(APP))
    return Paths(
        data=Path(platformdirs.user_data_dir(APP)),
        config=Path(platformdirs.user_config_dir(APP)),
        cache=Path(platformdirs.user_cache_dir(APP)),
        runtime=runtime,
    )


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it private to the user (0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
