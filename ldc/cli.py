"""The `ldc` command: a thin dispatcher. Each subcommand lives in its own module with `main(argv) -> int`."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("ldc.demo", "start the simulator and a feeder, show a live book (no network, no config)"),
    "run": ("ldc.supervisor", "run one feeder process per group of a config file, restarting them"),
    "feed": ("ldc.feeder", "run the feeder of one group (what ldc-feeder@.service runs)"),
    "status": ("ldc.tools.status", "every segment on the host: markets, sync state, ages, rates"),
    "book": ("ldc.tools.book", "print one consistent snapshot of a market"),
    "top": ("ldc.tools.top", "a live ladder of a market in the terminal"),
    "sim": ("ldc.sim.cli", "run the local Binance exchange simulator on 127.0.0.1"),
    "relay": ("ldc.fanout.relay", "publish a group's books to NATS for mirrors on other hosts"),
    "mirror": ("ldc.fanout.mirror", "write a group relayed over NATS into this host's segment"),
    "demo-hosts": ("ldc.fanout.demo", "simulator, feeder, NATS, relay and a mirror on a second host, checked"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: ldc COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`ldc COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from ldc import __version__

        print(f"ldc {__version__}")
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"ldc: unknown command {args[0]!r}, expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(entry[0])
    except ModuleNotFoundError as exc:
        if exc.name != entry[0]:
            raise
        print(f"ldc: command {args[0]!r} is not available in this build", file=sys.stderr)
        return 2
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
