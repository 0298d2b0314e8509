"""Configuration: one typed, frozen object.

Precedence (lowest to highest): built-in defaults < config file (TOML, `shellfish config path`)
< `SHELLFISH_<SECTION>_<KEY>` environment variables < command-line flags (applied by the CLI
with `Settings.with_overrides`).

Every error names where the bad value came from: `file:line` for the TOML file, the variable
name for the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
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
    default: str = "qwen2.5-coder-0.5b-shellfish"  # base + the shipped LoRA adapter (models/)
    suggest: str = ""  # empty: pick the installed model best suited to the task
    explain: str = ""
    ask: str = ""
    translate: str = ""
    prompt: str = ""


@dataclass(frozen=True)
class EngineSettings:
    provider: str = "cpu"  # cpu | coreml | cuda
    threads: int = 0  # 0: one per physical core
    max_context: int = 2048  # caps every model's context window (tokens); 0: the model's own
    # A model's int8-GEMM prefill graph (store/prefill.py): "warm" loads it in long-lived
    # processes (daemon, serve, eval), where ~0.4 s of load and ~0.5 GB buy ~35 % off every
    # prefill; "always" in a one-shot CLI run too; "never".
    prefill_graph: str = "warm"


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
    api_key_env: str = "OPENAI_API_KEY"  # the variable that holds the key
    api_key: str = ""  # a key in the config file itself (the variable wins when both are set)
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
    "engine.prefill_graph": ("warm", "always", "never"),
    "remote.policy": ("local", "remote", "auto"),
}

# Lowest allowed value of numeric settings (inclusive).
MINIMUMS: dict[str, float] = {
    "engine.threads": 0,
    "engine.max_context": 0,
    "daemon.idle_unload_s": 0,
    "daemon.idle_exit_s": 0,
    "daemon.memory_budget_mb": 0,
    "daemon.start_timeout_s": 0.1,
    "remote.timeout_s": 0.1,
    "remote.max_retries": 0,
    "context.max_commands": 0,
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _check_minimum(dotted: str, value: float, where: str) -> None:
    low = MINIMUMS.get(dotted)
    if low is not None and value < low:
        raise ConfigError(f"{where}: {dotted} must be >= {low:g}, not {value!r}")


def _coerce(section: str, key: str, value: Any, expected: type, where: str) -> Any:
    dotted = f"{section}.{key}"
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif expected is int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            number = int(value)
        if number is not None:
            _check_minimum(dotted, number, where)
            return number
    elif expected is float:
        real: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            real = float(value)
        elif isinstance(value, str):
            try:
                real = float(value)
            except ValueError:
                real = None
        if real is not None:
            _check_minimum(dotted, real, where)
            return real
    elif expected is str and isinstance(value, str):
        choices = VALID_CHOICES.get(dotted)
        if choices and value not in choices:
            raise ConfigError(
                f"{where}: {dotted} must be one of {', '.join(choices)}, not {value!r}"
            )
        return value
    raise ConfigError(
        f"{where}: {dotted} must be {expected.__name__}, not {type(value).__name__} ({value!r})"
    )


def _field_types(cls: type) -> dict[str, type]:
    hints = {"bool": bool, "int": int, "float": float, "str": str}
    return {f.name: hints[str(f.type)] for f in fields(cls)}


def known_keys() -> dict[str, type]:
    """Every setting as {"section.key": type}, in declaration order."""
    out: dict[str, type] = {}
    for section in fields(Settings):
        cls = type(getattr(Settings(), section.name))
        for key, kind in _field_types(cls).items():
            out[f"{section.name}.{key}"] = kind
    return out


def _line_of(text: str, section: str, key: str | None = None) -> int | None:
    """The 1-based line of `[section]` (or of `key` inside it) in a TOML text, if found."""
    current = ""
    header = re.compile(r"^\s*\[\s*\"?([^\]\"]+?)\"?\s*\]\s*(#.*)?$")
    for number, line in enumerate(text.splitlines(), start=1):
        match = header.match(line)
        if match:
            current = match.group(1).strip()
            if key is None and current == section:
                return number
            continue
        if key is None:
            continue
        stripped = line.strip()
        # Keys written inside the section, or dotted at the top level (`remote.model = ...`).
        if current == section and re.match(rf"^[\"']?{re.escape(key)}[\"']?\s*=", stripped):
            return number
        if current == "" and re.match(
            rf"^{re.escape(section)}\s*\.\s*[\"']?{re.escape(key)}[\"']?\s*=", stripped
        ):
            return number
    return None


def _where(source: str, text: str, section: str, key: str | None = None) -> str:
    line = _line_of(text, section, key) if text else None
    return f"{source}:{line}" if line else source


def _apply(
    base: Settings,
    data: dict[str, Any],
    source: str,
    text: str = "",
    where_of: dict[str, str] | None = None,
) -> Settings:
    sections = {f.name: f for f in fields(Settings)}
    out = base
    for section, values in data.items():
        if section not in sections:
            raise ConfigError(
                f"{_where(source, text, section)}: unknown section [{section}]",
                hint=f"known sections: {', '.join(sections)}",
            )
        if not isinstance(values, dict):
            raise ConfigError(
                f"{_where(source, text, '', section)}: {section} must be a table "
                f"([{section}]), not {type(values).__name__}"
            )
        cls = type(getattr(base, section))
        types = _field_types(cls)
        updates = {}
        for key, value in values.items():
            where = (where_of or {}).get(f"{section}.{key}") or _where(source, text, section, key)
            if key not in types:
                raise ConfigError(
                    f"{where}: unknown key {section}.{key}",
                    hint=f"known keys in [{section}]: {', '.join(types)}",
                )
            updates[key] = _coerce(section, key, value, types[key], where)
        out = replace(out, **{section: replace(getattr(out, section), **updates)})
    return out


def _decode_error(path: Path | str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    where = f"{path}:{match.group(1)}" if match else str(path)
    reason = message[: match.start()] if match else message
    col = f" (column {match.group(2)})" if match else ""
    return ConfigError(
        f"{where}: invalid TOML: {reason}{col}",
        hint="fix the file, or see `shellfish config show` for the valid keys",
    )


def read_config_file(config_file: Path) -> tuple[dict[str, Any], str]:
    """Parse the TOML file (missing file: empty) into (data, text); ConfigError when unreadable."""
    if not config_file.exists():
        return {}, ""
    try:
        raw = config_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{config_file}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config_file}: not UTF-8 text", hint="fix or remove the file") from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise _decode_error(config_file, exc) from exc


def load_settings(
    config_file: Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file (if it exists), then SHELLFISH_<SECTION>_<KEY> variables."""
    settings = Settings()
    if config_file is not None:
        data, text = read_config_file(config_file)
        settings = _apply(settings, data, str(config_file), text)
    env = os.environ if environ is None else environ
    from_env: dict[str, dict[str, Any]] = {}
    where_of: dict[str, str] = {}
    for f in fields(Settings):
        for key in _field_types(type(getattr(settings, f.name))):
            name = env_var_name(f"{f.name}.{key}")
            if name in env:
                from_env.setdefault(f.name, {})[key] = env[name]
                where_of[f"{f.name}.{key}"] = f"environment variable {name}"
    return _apply(settings, from_env, "environment", where_of=where_of) if from_env else settings


def env_var_name(dotted: str) -> str:
    section, _, key = dotted.partition(".")
    return f"SHELLFISH_{section.upper()}_{key.upper()}"


def parse_value(dotted: str, raw: str) -> Any:
    """Turn a command-line string into the typed value of setting `dotted` (or ConfigError)."""
    keys = known_keys()
    if dotted not in keys:
        raise ConfigError(
            f"unknown setting {dotted!r}",
            hint="run `shellfish config show` to list the settings",
        )
    section, _, key = dotted.partition(".")
    return _coerce(section, key, raw, keys[dotted], f"value for {dotted}")


def set_config_value(config_file: Path, dotted: str, raw: str) -> Any:
    """Validate `raw` for `dotted` and write it into the TOML file, keeping the other values.

    The existing file must be valid (it is not overwritten when it is not), and the result is
    validated again before it replaces the old file. Returns the typed value written.
    """
    import tomli_w

    value = parse_value(dotted, raw)
    data, text = read_config_file(config_file)
    _apply(Settings(), data, str(config_file), text)  # refuse to rewrite a broken file
    section, _, key = dotted.partition(".")
    data.setdefault(section, {})[key] = value
    new_text = tomli_w.dumps(data)
    _apply(Settings(), tomllib.loads(new_text), str(config_file), new_text)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = config_file.with_name(config_file.name + ".tmp")
    try:
        tmp.write_text(new_text, encoding="utf-8")
        os.replace(tmp, config_file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{config_file}: cannot write: {exc.strerror}") from exc
    return value


def settings_to_toml(settings: Settings) -> str:
    """The settings as a TOML document (what `shellfish config show` prints)."""
    import tomli_w

    return tomli_w.dumps(settings.to_dict())
