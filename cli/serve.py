"""``streamcore serve``: relay chat streams to browsers over SSE and WebSocket, with resume.

Loopback by default; binding anything else needs a bearer token::

    streamcore serve --port 8000
    STREAMCORE_SERVE_TOKEN=s3cret streamcore serve --host 0.0.0.0

Several processes behind a load balancer share their streams through Redis::

    streamcore serve --port 8001 --store redis://127.0.0.1:6379/0
    streamcore serve --port 8002 --store redis://127.0.0.1:6379/0

The first line printed is ``streamcore serve: http://HOST:PORT ...`` (with the port
actually bound, useful with ``--port 0``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Mapping

import trio

from streamcore._errors import LocalProtocolError
from streamcore.adapters.client import Provider
from streamcore.adapters.serve import ServeConfig, Server, open_server
from streamcore.cli.chat import PROVIDERS, choose_target, provider_for

__all__ = ["TOKEN_ENV", "add_parser", "run"]

TOKEN_ENV = "STREAMCORE_SERVE_TOKEN"
"""The environment variable holding the bearer token (rather than --token on a command line)."""
STORE_ENV = "STREAMCORE_STORE"
"""The environment variable holding the store URL, for one with a password (rather than --store)."""


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers``; returns its parser."""
    defaults = ServeConfig()
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="relay chat streams to a browser (SSE and WebSocket, with resume)",
        description=(
            "Serve POST /v1/streams, GET /v1/streams/<id>/events (SSE) and"
            " GET /v1/streams/<id>/ws (WebSocket), relaying to a provider or, with no"
            " API key set, to the built-in emulator. A browser that reconnects with"
            " Last-Event-ID gets exactly the events it missed."
        ),
    )
    parser.add_argument("--host", default=defaults.host, help="address to bind (default: loopback)")
    parser.add_argument(
        "--port", type=int, default=defaults.port, help="port; 0 picks a free one (default: 8000)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token clients must send (default: ${TOKEN_ENV}); required beyond loopback",
    )
    parser.add_argument("--provider", choices=PROVIDERS, default=None, help="upstream provider")
    parser.add_argument("--model", default=None, help="model (default: the provider's)")
    parser.add_argument("--base-url", default=None, help="base URL of an OpenAI-compatible server")
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="relay to the built-in emulator even if a key is set",
    )
    parser.add_argument(
        "--keepalive",
        type=float,
        default=defaults.keepalive,
        help=f"seconds between keep-alives on idle streams (default: {defaults.keepalive:g})",
    )
    parser.add_argument(
        "--replay-lifetime",
        type=float,
        default=defaults.replay_lifetime,
        help="seconds a stream waits for its browser to come back before the upstream"
        f" request is cancelled and its events dropped (default: {defaults.replay_lifetime:g})",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="cancel the upstream request as soon as the browser goes away",
    )
    parser.add_argument(
        "--max-streams",
        type=int,
        default=defaults.max_streams,
        help=f"streams open at once (default: {defaults.max_streams})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help=f"client connections open at once (default: {defaults.max_connections})",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="address of a proxy in front of the server (repeatable): requests from it count"
        " against the client its X-Forwarded-For names (rate limits); ignored from anyone else",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=defaults.rate,
        help=f"new streams per second per client after the burst (default: {defaults.rate:g})",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=defaults.burst,
        help=f"new streams a client may open at once (default: {defaults.burst})",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="where streams' events and leases live: redis://HOST:PORT/DB shares them between"
        " several serve processes (a reconnect to any of them resumes; a dead owner's streams"
        " are taken over); default: this process's memory. A URL with a password belongs in"
        f" ${STORE_ENV}, not here: a command line is visible to every user in `ps`",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=defaults.lease_ttl,
        help="seconds a process's claim on a stream lasts unrenewed: how soon another process"
        f" takes over the streams of one that died (default: {defaults.lease_ttl:g})",
    )
    parser.add_argument(
        "--node", default=None, help="this process's name in leases (default: random)"
    )
    parser.add_argument(
        "--emulator-faults",
        default=None,
        metavar="SPEC",
        help="faults for the built-in emulator, as in `streamcore mock` (e.g. pace=0.02)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=defaults.max_body_bytes,
        help=f"largest request body (default: {defaults.max_body_bytes})",
    )
    return parser


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> ServeConfig:
    """The server's configuration from parsed flags and the environment (token, store URL).

    A flag wins over its environment variable.
    """
    token = args.token if args.token is not None else (environ.get(TOKEN_ENV) or None)
    store = args.store if args.store is not None else (environ.get(STORE_ENV) or None)
    return dataclasses.replace(
        ServeConfig(),
        host=args.host,
        port=args.port,
        token=token,
        keepalive=args.keepalive,
        replay_lifetime=args.replay_lifetime,
        resume=not args.no_resume,
        max_streams=args.max_streams,
        max_connections=args.max_connections,
        trusted_proxies=tuple(args.trusted_proxy),
        rate=args.rate,
        burst=args.burst,
        max_body_bytes=args.max_body_bytes,
        model=args.model,
        store=store,
        lease_ttl=args.lease_ttl,
        node=args.node,
    )


async def _serve_until_signal(
    config: ServeConfig, provider: Provider | None, faults: str | None = None
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_server(config, provider=provider, emulator_faults=faults) as server:
            _announce(server, provider)
            async for _ in signals:
                return


def _announce(server: Server, provider: Provider | None) -> None:
    upstream = "the built-in emulator" if provider is None else repr(provider)
    store = "memory" if not server.store.shared else repr(server.store)
    print(
        f"streamcore serve: {server.base_url} relaying to {upstream} (store: {store},"
        f" node {server.node})",
        flush=True,
    )
    print("  POST /v1/streams  ·  GET /v1/streams/<id>/events (SSE)  ·  /ws (WebSocket)")
    print("Press Ctrl-C to stop.", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``streamcore serve``; returns the exit code (2 for bad flags or an unusable port)."""
    environ = dict(os.environ)
    config = config_from(args, environ)
    try:
        target = choose_target(
            provider=args.provider,
            model=args.model,
            base_url=args.base_url,
            emulator=args.emulator,
            environ=environ,
        )
        provider = None if target.emulator else provider_for(target, environ, None)
        trio.run(_serve_until_signal, config, provider, args.emulator_faults)
    except LocalProtocolError as exc:
        print(f"streamcore serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"streamcore serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print("streamcore serve: stopped", flush=True)
    return 0
