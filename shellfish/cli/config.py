"""`shellfish config show | path | get KEY | set KEY VALUE`.

Precedence: defaults < config file < SHELLFISH_<SECTION>_<KEY> environment < flags.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from shellfish.errors import ExitStatus

if TYPE_CHECKING:
    from shellfish.environment import Environment


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show or change settings (TOML file; env SHELLFISH_<SECTION>_<KEY> overrides it)",
    )
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION")
    parser.set_defaults(func=cmd_show, json=False)

    p = sub.add_parser("show", help="the effective settings (defaults < file < environment)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("path", help="where the config file is")
    p.set_defaults(func=cmd_path)

    p = sub.add_parser("get", help="one effective setting, e.g. remote.policy")
    p.add_argument("key")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("set", help="validate and write one setting into the config file")
    p.add_argument("key", help="section.key, e.g. remote.policy")
    p.add_argument("value", help="the new value (checked against the setting's type)")
    p.set_defaults(func=cmd_set)


def cmd_show(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.config import settings_to_toml
    from shellfish.errors import ConfigError

    try:
        settings = env.settings
    except ConfigError as exc:
        return _show_broken(args, env, exc)
    if getattr(args, "json", False):
        env.stdout.write(json.dumps(settings.to_dict(), indent=2) + "\n")
    else:
        env.stdout.write(f"# {env.paths.config_file}\n" + settings_to_toml(settings))
    env.stdout.flush()
    return int(ExitStatus.OK)


def _show_broken(args: argparse.Namespace, env: Environment, exc: Exception) -> int:
    """A broken file: say where (path, line and its text), then show the defaults, which are
    what applies once the line is fixed or removed. Its own hint would point back here."""
    import re

    from shellfish.config import Settings, settings_to_toml

    message = getattr(exc, "message", str(exc))
    env.error(message)
    path = env.paths.config_file
    where = re.match(rf"^{re.escape(str(path))}:(\d+):", message)
    if where:
        number = int(where.group(1))
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        if 0 < number <= len(lines):
            env.info(f"  {number} | {lines[number - 1]}")
    env.info(f"fix or remove that line in {path}; the defaults follow on stdout")
    defaults = Settings()
    if getattr(args, "json", False):
        env.stdout.write(json.dumps(defaults.to_dict(), indent=2) + "\n")
    else:
        env.stdout.write("# defaults (the config file is invalid)\n" + settings_to_toml(defaults))
    env.stdout.flush()
    return int(ExitStatus.USAGE)


def cmd_path(args: argparse.Namespace, env: Environment) -> int:
    env.stdout.write(f"{env.paths.config_file}\n")
    env.stdout.flush()
    return int(ExitStatus.OK)


def cmd_get(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.config import known_keys
    from shellfish.errors import ConfigError

    if args.key not in known_keys():
        raise ConfigError(
            f"unknown setting {args.key!r}", hint="run `shellfish config show` to list them"
        )
    section, _, key = args.key.partition(".")
    value = getattr(getattr(env.settings, section), key)
    env.stdout.write(f"{json.dumps(value) if not isinstance(value, str) else value}\n")
    env.stdout.flush()
    return int(ExitStatus.OK)


def cmd_set(args: argparse.Namespace, env: Environment) -> int:
    from shellfish.config import env_var_name, load_settings, set_config_value

    path = env.paths.config_file
    value = set_config_value(path, args.key, args.value)
    load_settings(path, {})  # the written file must load on its own
    env.info(f"{args.key} = {json.dumps(value)} written to {path}")
    variable = env_var_name(args.key)
    if variable in env.environ:
        env.warn(f"${variable} is set and overrides the file")
    return int(ExitStatus.OK)
