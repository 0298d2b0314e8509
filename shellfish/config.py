"""Configuration: one typed, frozen object.

Precedence (lowest to highest): built-in defaults < config file (TOML, `shellfish config path`)
< `SHELLFISH_<SECTION>_<KEY>` environment variables < command-line flags (applied by the CLI
with `Settings.with_overrides`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from shellfish.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TASKS = ("suggest", "explain", "ask", "translate", "prompt")


@dataclass(frozen=True)
class ModelSettings:
    default: str = "qwen2.5-coder-0.5b-instruct"
    suggest: str = ""  # empty: pick the installed model best suited to the task
    explain: str = ""
    ask: str = ""
    translate: str = ""
    prompt: str = ""


@dataclass(frozen=True)
class EngineSettings:
    provider: str = "cpu"  # cpu | coreml | cuda
    threads: int = 0  # 0: one per physical core
    max_context: int = 2048


@dataclass(frozen=True)
class DaemonSettings:
    autostart: bool = False
    idle_unload_s: float = 900.0
    idle_exit_s: float = 3600.0
    memory_budget_mb: int = 0  # 0: half of the machine's available memory
    start_timeout_s: float = 60.0


@dataclass(frozen=True)
class RemoteSettings:
    policy: str = "local"  # local | remote | auto
    base_url: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    model: str = "gpt-4o-mini"
    timeout_s: float = 30.0
    max_retries: int = 2
    proxy: str = ""


@dataclass(frozen=True)
class HistorySettings:
    enabled: bool = True


@dataclass(frozen=True)
class ContextSettings:
    capture: bool = True
    max_commands: int = 20


@dataclass(frozen=True)
class Settings:
    models: ModelSettings = field(default_factory=ModelSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    context: ContextSettings = field(default_factory=ContextSettings)

    def with_overrides(self, dotted: dict[str, Any]) -> Settings:
        """Apply {"section.key": value} overrides (None values are skipped)."""
        out = self
        for key, value in dotted.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            sub = getattr(out, section)
            out = replace(out, **{section: replace(sub, **{name: value})})
        return out

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


VALID_CHOICES: dict[str, tuple[str, ...]] = {
    "engine.provider": ("cpu", "coreml", "cuda"),
    "remote.policy": ("local", "remote", "auto"),
}


def _coerce(section: str, key: str, value: Any, expected: type, where: str) -> Any:
    dotted = f"{section}.{key}"
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif expected is str and isinstance(value, str):
        choices = VALID_CHOICES.get(dotted)
        if choices and value not in choices:
            raise ConfigError(f"{where}: {dotted} must be one of {', '.join(choices)}, not {value!r}")
        return value
    raise ConfigError(
        f"{where}: {dotted} must be {expected.__name__}, not {type(value).__name__} ({value!r})"
    )


def _field_types(cls: type) -> dict[str, type]:
    hints = {"bool": bool, "int": int, "float": float, "str": str}
    return {f.name: hints[str(f.type)] for f in fields(cls)}


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith((key, f'"{key}"')) or line.strip() == f"[{key}]":
            return number
    return None


def _apply(base: Settings, data: dict[str, Any], source: str, text: str = "") -> Settings:
    sections = {f.name: f for f in fields(Settings)}
    out = base
    for section, values in data.items():
        if section not in sections:
            line = _line_of(text, section)
            where = f"{source}:{line}" if line else source
            raise ConfigError(f"{where}: unknown section [{section}]", hint=f"known: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        cls = type(getattr(base, section))
        types = _field_types(cls)
        updates = {}
        for key, value in values.items():
            line = _line_of(text, key)
            where = f"{source}:{line}" if line else source
            if key not in types:
                raise ConfigError(
                    f"{where}: unknown key {section}.{key}", hint=f"known: {', '.join(types)}"
                )
            updates[key] = _coerce(section, key, value, types[key], where)
        out = replace(out, **{section: replace(getattr(out, section), **updates)})
    return out


def load_settings(
    config_file: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file (if it exists), then SHELLFISH_<SECTION>_<KEY> variables."""
    settings = Settings()
    if config_file is not None and config_file.exists():
        text = config_file.read_text(encoding="utf-8", errors="replace")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: invalid TOML: {exc}", hint="fix or remove the file") from exc
        settings = _apply(settings, data, str(config_file), text)
    env = os.environ if environ is None else environ
    from_env: dict[str, dict[str, Any]] = {}
    for f in fields(Settings):
        for key in _field_types(type(getattr(settings, f.name))):
            name = f"SHELLFISH_{f.name.upper()}_{key.upper()}"
            if name in env:
                from_env.setdefault(f.name, {})[key] = env[name]
    return _apply(settings, from_env, "environment") if from_env else settings
