"""`shellfish doctor`: check the install and say what to do about each problem.

Checks: the config file, onnxruntime and its execution providers, installed models (and the
default), the daemon (running, stale socket), the zsh hook, the history log, and the remote
endpoint (configured, reachable within a short timeout). Exit status 1 when something is
broken; warnings alone exit 0.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shellfish.errors import ExitStatus, ShellfishError

if TYPE_CHECKING:
    from shellfish.config import Settings
    from shellfish.environment import Environment

OK, WARN, FAIL = "ok", "warn", "fail"
HOOK_LINE = 'eval "$(shellfish init zsh)"'


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("doctor", help="check the install and say how to fix problems")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for the remote check")
    p.set_defaults(func=cmd_doctor)


def check_config(env: Environment) -> tuple[Check, Settings | None]:
    from shellfish.config import load_settings

    path = env.paths.config_file
    try:
        settings = load_settings(path, env.environ)
    except ShellfishError as exc:
        return Check("config", FAIL, exc.message, exc.hint or f"fix or remove {path}"), None
    where = str(path) if path.exists() else f"defaults ({path} does not exist)"
    return Check("config", OK, f"valid: {where}"), settings


def check_onnxruntime(settings: Settings) -> Check:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Check(
            "onnxruntime",
            FAIL,
            f"cannot import onnxruntime ({exc})",
            "reinstall shellfish: `pip install --force-reinstall onnxruntime`",
        )
    available = list(ort.get_available_providers())
    detail = f"{ort.__version__}; providers: {', '.join(available)}"
    from shellfish.engine.providers import PROVIDER_NAMES

    wanted = PROVIDER_NAMES.get(settings.engine.provider, "")
    if wanted and wanted not in available:
        return Check(
            "onnxruntime",
            WARN,
            f"{detail}; {wanted} (engine.provider = "
            f"{settings.engine.provider}) is not available, running on CPU",
            "install the matching onnxruntime build, or `shellfish config set engine.provider cpu`",
        )
    return Check("onnxruntime", OK, detail)


def check_models(env: Environment, settings: Settings) -> Check:
    try:
        from shellfish.store.store import Store

        store = Store(env.paths)
        installed = store.installed()
    except ShellfishError as exc:
        return Check("models", FAIL, exc.message, exc.hint or "")
    except OSError as exc:
        return Check(
            "models",
            FAIL,
            f"cannot read {env.paths.models}: {exc.strerror}",
            "check the permissions of the data dir",
        )
    remote_only = settings.remote.policy == "remote"
    if not installed:
        return Check(
            "models",
            WARN if remote_only else FAIL,
            f"no model installed in {env.paths.models}",
            f"run `shellfish setup` or `shellfish models pull {settings.models.default}`",
        )
    names = ", ".join(m.name for m in installed)
    default = settings.models.default
    try:
        store.resolve(default)
    except ShellfishError as exc:
        return Check(
            "models",
            WARN,
            f"installed: {names}; default {default!r}: {exc.message}",
            exc.hint or f"`shellfish models pull {default}`",
        )
    stale = _out_of_date(store, default)
    if stale:
        return Check(
            "models",
            WARN,
            f"installed: {names}; default {default!r} was converted before its catalog "
            "descriptor changed (it runs, without what the descriptor adds now)",
            f"`shellfish setup` converts it again ({stale})",
        )
    return Check("models", OK, f"installed: {names}; default: {default}")


def _out_of_date(store: Any, name: str) -> str:
    """Why an installed catalog model is not built as its descriptor reads now ("" if it is)."""
    from shellfish.store.install import built_as_described

    desc = store.catalog.find(name)
    model = store.get(desc.name) if desc is not None else None
    if desc is None or model is None or not desc.sources:
        return ""
    if built_as_described(model.manifest, desc.sources[0]):
        return ""
    built = model.manifest.get("source") or {}
    if desc.sources[0].prefill_graph and not built.get("prefill_graph"):
        return "the daemon's prefill graph is missing"
    return "its conversion differs from the descriptor"


def check_daemon(env: Environment) -> Check:
    socket_path = env.paths.socket
    had_socket = socket_path.exists()
    try:
        from shellfish.client.daemon import DaemonClient

        running = DaemonClient(env.paths, connect_timeout=1.0).is_running()
    except ShellfishError as exc:
        return Check("daemon", FAIL, exc.message, exc.hint or "`shellfish daemon restart`")
    if running:
        return Check("daemon", OK, f"running, socket {socket_path}")
    if had_socket:
        still = socket_path.exists()
        return Check(
            "daemon",
            WARN,
            f"stale socket {socket_path} (no daemon answers)" + ("" if still else "; removed it"),
            "start it with `shellfish daemon start` (or let answers run in-process)"
            if not still
            else f"remove {socket_path} and run `shellfish daemon start`",
        )
    return Check(
        "daemon",
        OK,
        "not running (answers run in-process; `shellfish daemon start` keeps models warm)",
    )


def _zshrc(environ: dict[str, str]) -> Path | None:
    base = environ.get("ZDOTDIR") or environ.get("HOME")
    return Path(base).expanduser() / ".zshrc" if base else None


def check_zsh(env: Environment, which: Callable[[str], str | None] = shutil.which) -> Check:
    zsh = which("zsh")
    rc = _zshrc(env.environ)
    if zsh is None:
        return Check(
            "zsh",
            WARN,
            "zsh is not installed (the widget needs it; the CLI works)",
            "install zsh, e.g. `sudo apt install zsh`",
        )
    if rc is None or not rc.is_file():
        return Check(
            "zsh",
            WARN,
            f"zsh at {zsh}, but no {rc or '~/.zshrc'}",
            f"add `{HOOK_LINE}` to ~/.zshrc",
        )
    try:
        text = rc.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return Check("zsh", WARN, f"cannot read {rc}: {exc.strerror}", "check its permissions")
    active = [
        line
        for line in text.splitlines()
        if "shellfish init zsh" in line and not line.lstrip().startswith("#")
    ]
    if not active:
        return Check(
            "zsh",
            WARN,
            f"the shellfish hook is not in {rc}",
            f"add `{HOOK_LINE}` to {rc}, then open a new shell",
        )
    return Check("zsh", OK, f"hook loaded from {rc} (zsh at {zsh})")


def check_history(env: Environment, settings: Settings) -> Check:
    if not settings.history.enabled:
        return Check("history", OK, "logging disabled (history.enabled = false)")
    from shellfish.history.log import HistoryLog

    try:
        version = HistoryLog(env.paths.history_db).schema_version()
    except ShellfishError as exc:
        return Check("history", FAIL, exc.message, exc.hint or "")
    if version == 0:
        return Check("history", OK, f"no log yet ({env.paths.history_db})")
    return Check("history", OK, f"{env.paths.history_db} (schema {version})")


def check_remote(env: Environment, settings: Settings, timeout_s: float) -> Check:
    remote = settings.remote
    if remote.policy == "local":
        return Check("remote", OK, "off (remote.policy = local: nothing is ever sent)")
    if not remote.base_url:
        return Check(
            "remote",
            FAIL,
            f"remote.policy = {remote.policy} but no endpoint is set",
            "`shellfish config set remote.base_url https://host/v1`",
        )
    from shellfish.remote.backend import RemoteBackend

    backend = RemoteBackend(remote, env.environ, paths=env.paths)
    try:
        detail = backend.check(timeout_s=timeout_s)
    except ShellfishError as exc:
        return Check("remote", FAIL, exc.message, exc.hint or "")
    if backend.api_key() is None:
        return Check(
            "remote",
            WARN,
            f"{detail}; no API key (${remote.api_key_env} is unset)",
            f"export {remote.api_key_env}=... if the endpoint needs a key",
        )
    return Check("remote", OK, detail)


def run_checks(env: Environment, *, timeout_s: float = 3.0) -> list[Check]:
    config, settings = check_config(env)
    checks = [config]
    if settings is None:
        from shellfish.config import Settings

        settings = Settings()  # check the rest with defaults
    for check in (
        lambda: check_onnxruntime(settings),
        lambda: check_models(env, settings),
        lambda: check_daemon(env),
        lambda: check_zsh(env),
        lambda: check_history(env, settings),
        lambda: check_remote(env, settings, timeout_s),
    ):
        try:
            checks.append(check())
        except Exception as exc:  # one broken check must not hide the others
            checks.append(
                Check(
                    "doctor",
                    FAIL,
                    f"a check crashed: {type(exc).__name__}: {exc}",
                    "please report this",
                )
            )
    return checks


def cmd_doctor(args: argparse.Namespace, env: Environment) -> int:
    checks = run_checks(env, timeout_s=args.timeout)
    if args.json:
        env.stdout.write(json.dumps([asdict(c) for c in checks], indent=2) + "\n")
    else:
        marks = {OK: "ok  ", WARN: "warn", FAIL: "FAIL"}
        for c in checks:
            env.stdout.write(f"[{marks[c.status]}] {c.name}: {c.detail}\n")
            if c.fix and c.status != OK:
                env.stdout.write(f"       -> {c.fix}\n")
    env.stdout.flush()
    broken = sum(c.status == FAIL for c in checks)
    if broken:
        env.error(f"{broken} problem{'s' if broken > 1 else ''} found")
        return int(ExitStatus.ERROR)
    return int(ExitStatus.OK)
