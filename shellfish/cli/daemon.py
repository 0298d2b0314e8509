"""`shellfish daemon start | stop | status | restart | logs | load | unload`."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shellfish.environment import Environment


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("daemon", help="the background process that keeps models warm")
    sub = parser.add_subparsers(dest="daemon_command", metavar="ACTION")
    parser.set_defaults(func=cmd_status, json=False)

    p = sub.add_parser("start", help="start the daemon (no-op when it runs)")
    p.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODEL",
        help="load MODEL right after start (repeatable)",
    )
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", help="stop the daemon")
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("restart", help="stop, then start (after an upgrade)")
    p.add_argument("--preload", action="append", default=[], metavar="MODEL")
    p.set_defaults(func=cmd_restart)
    p = sub.add_parser(
        "status",
        help="pid, uptime, memory, requests, loaded models (exit status 4: not running)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("logs", help="the end of the daemon log")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("load", help="load a model into the running daemon")
    p.add_argument("model")
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("unload", help="unload a model from the running daemon")
    p.add_argument("model")
    p.set_defaults(func=cmd_unload)


def _extra(args: Any) -> list[str]:
    out: list[str] = []
    for name in getattr(args, "preload", []) or []:
        out += ["--preload", name]
    return out


def cmd_start(args: Any, env: Environment) -> int:
    from shellfish.client import lifecycle

    info = lifecycle.start(env.paths, env.settings, environ=env.environ, extra_args=_extra(args))
    word = "already running" if info.get("already_running") else "started"
    env.info(f"shellfish daemon {word} (pid {info.get('pid')}, socket {env.paths.socket})")
    return 0


def cmd_stop(args: Any, env: Environment) -> int:
    from shellfish.client import lifecycle

    env.info(
        "shellfish daemon stopped"
        if lifecycle.stop(env.paths)
        else "shellfish daemon was not running"
    )
    return 0


def cmd_restart(args: Any, env: Environment) -> int:
    from shellfish.client import lifecycle

    info = lifecycle.restart(env.paths, env.settings, environ=env.environ, extra_args=_extra(args))
    env.info(f"shellfish daemon restarted (pid {info.get('pid')})")
    return 0


def cmd_status(args: Any, env: Environment) -> int:
    from shellfish.client import lifecycle
    from shellfish.errors import DaemonUnavailable, ExitStatus

    try:
        status = lifecycle.status(env.paths)
    except DaemonUnavailable:
        # "Not running" is the answer to the question, not an error; the exit status (4) still
        # lets a script tell it apart.
        if getattr(args, "json", False):
            env.stdout.write(json.dumps({"running": False}) + "\n")
        else:
            env.stdout.write("not running - start it with `shellfish daemon start`\n")
        env.stdout.flush()
        return int(ExitStatus.DAEMON)
    if getattr(args, "json", False):
        status = {"running": True, **status}
        env.stdout.write(json.dumps(status, indent=2, sort_keys=True) + "\n")
        return 0
    out = env.stdout
    out.write(
        f"running     pid {status['pid']}, protocol {status['protocol']}, "
        f"up {_duration(status['uptime_s'])}\n"
    )
    out.write(f"socket      {status['socket']}\n")
    out.write(
        f"memory      {status['rss_mb']:.0f} MB (budget {status['memory_budget_mb']:.0f} MB)\n"
    )
    out.write(f"requests    {status['requests']} served, {status['active']} active\n")
    out.write(
        f"idle        unload after {_duration(status['idle_unload_s'])}, "
        f"exit after {_duration(status['idle_exit_s'])}\n"
    )
    models = status.get("models") or []
    if not models:
        out.write("models      none loaded\n")
    for i, model in enumerate(models):
        label = "models" if i == 0 else ""
        idle = _duration(max(0.0, time.time() - model["last_used"]))
        out.write(
            f"{label:<12}{model['name']} ({model['family']}, ~{model['rss_mb']:.0f} MB, "
            f"{model['requests']} requests, idle {idle})\n"
        )
    return 0


def cmd_logs(args: Any, env: Environment) -> int:
    from shellfish.client import lifecycle

    lines = lifecycle.read_log(env.paths, args.lines)
    if not lines and not env.paths.daemon_log.exists():
        env.info(f"no daemon log yet ({env.paths.daemon_log})")
        return 0
    for line in lines:
        env.stdout.write(line + "\n")
    env.stdout.flush()
    if args.follow:
        _follow(env)
    return 0


def _follow(env: Environment) -> None:
    with open(env.paths.daemon_log, encoding="utf-8", errors="replace") as handle:
        handle.seek(0, 2)
        while True:  # until Ctrl-C (the CLI maps it to exit 130)
            line = handle.readline()
            if line:
                env.stdout.write(line)
                env.stdout.flush()
            else:
                time.sleep(0.25)


def cmd_load(args: Any, env: Environment) -> int:
    from shellfish.client.daemon import DaemonClient

    done = DaemonClient(env.paths).load(args.model)
    for warning in done.extra.get("warnings", []):
        env.warn(str(warning))
    state = (
        "was already loaded"
        if done.extra.get("already_loaded")
        else f"loaded in {done.load_ms:.0f} ms"
    )
    env.info(f"{args.model} {state}")
    return 0


def cmd_unload(args: Any, env: Environment) -> int:
    from shellfish.client.daemon import DaemonClient

    unloaded = DaemonClient(env.paths).unload(args.model)
    env.info(f"{args.model} unloaded" if unloaded else f"{args.model} was not loaded")
    return 0


def _duration(seconds: float) -> str:
    if seconds <= 0:
        return "never"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
