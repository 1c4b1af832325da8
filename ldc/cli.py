"""The `ldc` command: a thin dispatcher. Each subcommand lives in its own module with `main(argv) -> int`."""

from __future__ import annotations

import importlib
import os
import select
import signal
import sys

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a command killed by SIGPIPE (`yes | head`)

# subcommand -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("ldc.demo", "start the simulator and a feeder per venue (Binance spot, USD-M, OKX, Bybit, HTX, Coinbase, Kraken), show live books (no network, no config)"),
    "run": ("ldc.supervisor", "run one feeder process per group of a config file, restarting them"),
    "feed": ("ldc.feeder", "run the feeder of one group (what ldc-feeder@.service runs; --standby: a hot standby)"),
    "status": ("ldc.tools.status", "every segment on the host: markets, sync state, ages, rates"),
    "book": ("ldc.tools.book", "print one consistent snapshot of a market"),
    "top": ("ldc.tools.top", "a live ladder of a market in the terminal"),
    "clean": ("ldc.tools.clean", "remove the /dev/shm files of groups no writer runs (--dry-run to list)"),
    "metrics": ("ldc.metrics", "serve Prometheus metrics of every segment on the host (read from shared memory)"),
    "sim": ("ldc.sim.cli", "run the local exchange simulator (every venue) on 127.0.0.1"),
    "ctl": ("ldc.control", "control a running feeder: add / remove markets, resync, refresh, list"),
    "relay": ("ldc.fanout.relay", "publish a group's books to NATS for mirrors on other hosts"),
    "mirror": ("ldc.fanout.mirror", "write a group relayed over NATS into this host's segment"),
    "demo-hosts": ("ldc.fanout.demo", "simulator, feeder, NATS, relay and a mirror on a second host, checked"),
}


def child_command(*args: str) -> list[str]:
    """`ldc ARGS` for a child process that imports the very ldc package this process imported.

    `python -m ldc.cli` would put the working directory first on the child's path: started inside a source
    checkout with a non-editable install, the child would import the uncompiled tree there instead of the
    installed package (issue 14 item 11). The child's path starts with the directory this `ldc` came from.
    """
    import ldc

    root = os.path.dirname(os.path.dirname(os.path.abspath(ldc.__file__)))
    bootstrap = f"import sys; sys.path[0] = {root!r}; from ldc.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", bootstrap, *args]


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
    try:
        code = int(module.main(args[1:]))
        sys.stdout.flush()  # inside the try: a pipe closed early fails here, not in the interpreter's exit
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # a socket's broken pipe is an error to see
        # `ldc top | head`: whoever read our output has what it wanted; end quietly, as coreutils do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's final flush goes nowhere
        return EXIT_BROKEN_PIPE
    return code


def _stdout_reader_gone() -> bool:
    """True when standard output is a pipe whose reading end is closed (poll says POLLERR on the write end)."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


if __name__ == "__main__":
    sys.exit(main())
