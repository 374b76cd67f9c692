"""`edge-gateway`: run, demo, check-config, version.

Exit codes: 0 ok, 2 bad configuration or usage, 1 runtime failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

# Imports stay in the commands that need them: `run` writes every output safe before the daemon
# (pydantic, numpy, aiohttp, ...) is loaded, so nothing heavy is imported at this module's top.

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-gateway",
        description="Plant-floor safety gateway (not a certified safety system: it removes permissives, "
        "it never bypasses a hardware trip).",
    )
    p.add_argument("--log-level", default="info", help="debug, info, warning or error (default: info)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway with a configuration file")
    run.add_argument("--config", required=True, type=Path, help="the TOML configuration")
    run.add_argument("--duration", type=float, default=None, help="stop cleanly after S seconds")

    demo = sub.add_parser("demo", help="run a simulated plant with the gateway and its status page")
    demo.add_argument("--scenario", default="o2-drop", help="o2-drop (default), detector-fault, lel-rise, pump-wear")
    demo.add_argument("--http-port", type=int, default=8080, help="status page port (default 8080)")
    demo.add_argument("--mqtt-port", type=int, default=1883, help="broker port; embedded broker if none there")
    demo.add_argument("--duration", type=float, default=None, help="stop cleanly after S seconds")
    demo.add_argument("--config", type=Path, default=None, help="demo configuration (default config/demo.toml)")

    chk = sub.add_parser("check-config", help="validate a configuration, warn about implausible settings, summarize")
    chk.add_argument("file", type=Path)
    chk.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 2)")

    ob = sub.add_parser(
        "outbox", help="the ledger outbox: list [--state ...] | retry ID [--config FILE]", add_help=False
    )
    ob.add_argument("action", choices=["list", "retry"])
    ob.add_argument("rest", nargs=argparse.REMAINDER)

    audit = sub.add_parser(
        "audit",
        help="the audit chain: verify FILE [--anchor SEQ:HASH] (edits, deletions, reordering; with an anchor "
        "published on MQTT audit/head also a cut tail) | replay FILE (interlock decisions re-run)",
    )
    audit.add_argument("action", choices=["verify", "replay"])
    audit.add_argument("file", type=Path)
    audit.add_argument("--anchor", default=None, help="verify: a head SEQ:HASH published earlier (MQTT audit/head)")

    hp = sub.add_parser("hash-password", help="make a password hash for status.users (reads the password)")
    hp.add_argument("--stdin", action="store_true", help="read the password from standard input")

    sub.add_parser("version", help="print the version")
    return p


def summary(cfg: GatewayConfig) -> str:
    from collections import Counter

    kinds = Counter(z.kind for z in cfg.zones)
    transports = Counter(d.transport for d in cfg.devices)
    lines = [
        f"site {cfg.site.id} / gateway {cfg.site.gateway_id}  profile {cfg.site.profile}",
        f"zones    {len(cfg.zones)}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
    ]
    for z in cfg.zones:
        sigs = [s.id for s in cfg.signals if s.zone == z.id]
        outs = [f"{o.id}({o.kind})" for o in cfg.outputs if o.zone == z.id]
        lines.append(f"  {z.id:<14} {z.kind:<15} signals: {', '.join(sigs) or '-'}  outputs: {', '.join(outs) or '-'}")
    lines += [
        f"devices  {len(cfg.devices)}: " + ", ".join(f"{n} {k}" for k, n in sorted(transports.items())),
        f"signals  {len(cfg.signals)}   outputs {len(cfg.outputs)}   receivers {len(cfg.receivers)}",
        f"mqtt     {cfg.mqtt.url} prefix {cfg.mqtt.prefix}",
        f"ledger   {cfg.ledger.url or '(none: records stay in the outbox)'}",
        f"tsdb     {cfg.tsdb.url or '(none)'}",
        f"status   http://{cfg.status.bind}:{cfg.status.port}/",
    ]
    return "\n".join(lines)


def _check_config(path: Path, strict: bool = False) -> int:
    from gateway.config import ConfigError, plausibility
    from gateway.config.loader import engine_cfg, load

    try:
        cfg = load(path)
    except ConfigError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for prob in exc.problems:
            print(f"  {prob}", file=sys.stderr)
        return EXIT_USAGE
    warned = plausibility.warnings(cfg, engine_cfg(cfg))
    if warned:
        word = "error(s) (--strict)" if strict else "warning(s)"
        print(f"{path}: {len(warned)} {word}: valid, but probably not what the site wants", file=sys.stderr)
        for w in warned:
            print(f"  {w}", file=sys.stderr)
        if strict:
            return EXIT_USAGE
    print(f"{path}: OK" + (f" with {len(warned)} warning(s)" if warned else ""))
    print(summary(cfg))
    return EXIT_OK


def _run(path: Path, duration: float | None) -> int:
    """Outputs safe first, from the raw TOML (startup.SafeFirst: read back, watchdogs fed meanwhile);
    then the daemon is imported, the same document validated and the daemon built; it confirms the
    outputs again as the first step of its start."""
    from gateway.app.startup import SafeFirst

    first = SafeFirst(path).start()
    try:
        import asyncio

        from gateway.app.daemon import Daemon, config_hash
        from gateway.config import ConfigError
        from gateway.config.loader import load, parse

        try:
            cfg = load(path) if first.raw is None else parse(first.raw, str(path), path.parent)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE
        try:
            daemon = Daemon(cfg, base=path.parent, config_hash=config_hash(path), config_path=path)
        except (OSError, ValueError) as exc:  # a key, certificate or secret file that does not load
            print(f"edge-gateway: cannot start: {exc}. Fix: check the file it names (readable by the service user, "
                  "right format); `edge-gateway check-config` checks the rest", file=sys.stderr)  # fmt: skip
            return EXIT_RUNTIME
    finally:
        first.hand_over()
    return asyncio.run(daemon.run(duration, outputs_within_s=first.outputs_within_s()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from gateway.app import logs

    try:
        logs.setup(args.log_level)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    match args.cmd:
        case "version":
            print(f"edge-gateway {__version__}")
            return EXIT_OK
        case "check-config":
            return _check_config(args.file, args.strict)
        case "outbox":
            from gateway.ledger.outbox_cli import outbox_list_main, outbox_retry_main

            return (outbox_list_main if args.action == "list" else outbox_retry_main)(args.rest)
        case "audit":
            if args.action == "verify":
                from gateway.ledger.audit import audit_verify_main

                return audit_verify_main(args.file, anchor=args.anchor)
            from gateway.ledger.replay import audit_replay_main

            return audit_replay_main(args.file)
        case "hash-password":
            from gateway.status.auth import hash_password_main

            return hash_password_main(["--stdin"] if args.stdin else [])
        case "run":
            return _run(args.config, args.duration)
        case "demo":
            from gateway.app.demo import run_demo

            return run_demo(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
