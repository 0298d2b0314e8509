"""`shellfish serve`: a local OpenAI-compatible endpoint (127.0.0.1 only by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shellfish.errors import UsageError

if TYPE_CHECKING:
    from shellfish.environment import Environment

DEFAULT_PORT = 8741


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="an OpenAI-compatible HTTP endpoint over your local models",
        description="Serve /v1/models, /v1/chat/completions and /v1/completions (streaming "
        "and not) from the models installed here. Loopback only unless --allow-remote. "
        "What the default exposes: without --token, any local user (any program on this "
        "machine) can use your models through it. Web pages cannot: requests whose Host is "
        "not loopback (or --host) are refused, so are browser Origins not named by "
        "--allow-origin, and POST bodies not sent as application/json. Bodies over 4 MiB are "
        "refused, max_tokens is capped at the model's context, and a client that disconnects "
        "stops its generation.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "--token",
        help="require `Authorization: Bearer TOKEN` (default: $SHELLFISH_SERVE_TOKEN, if set)",
    )
    p.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (use with --token)"
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN (e.g. http://localhost:3000) call the endpoint, with "
        "CORS headers; repeatable (default: every browser Origin is refused)",
    )
    p.add_argument("--preload", metavar="MODEL", help="load MODEL before accepting requests")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: Any, env: Environment) -> int:
    from shellfish.serve.server import check_host

    check_host(args.host, allow_remote=args.allow_remote)  # before any heavy import
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, not {args.port}")
    token = args.token or env.environ.get("SHELLFISH_SERVE_TOKEN") or None
    if args.allow_remote and not token:
        env.warn("serving beyond loopback without --token: anyone who can reach it can use it")

    from shellfish.serve.app import Backend, create_app
    from shellfish.serve.server import accepted_hosts, serve_forever
    from shellfish.store.pool import ModelPool

    pool = ModelPool(env.paths, env.settings, long_lived=True)
    if args.preload:
        pool.get(args.preload)
    app = create_app(
        Backend(pool, env.settings, env.paths),
        token=token,
        hosts=accepted_hosts(args.host),
        origins=args.allow_origin,
    )

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        env.info(
            f"shellfish serve: http://{shown}:{port}/v1 (Ctrl-C to stop)"
            + (" - bearer token required" if token else "")
        )

    try:
        serve_forever(
            app, host=args.host, port=args.port, allow_remote=args.allow_remote, on_ready=ready
        )
    finally:
        pool.close()
    return 0
