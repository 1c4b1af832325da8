"""NATS connection options (a URL, or a TOML file's ``[nats]`` table) and a connect that waits.

The TOML table (every key optional but ``servers``)::

    [nats]
    servers = ["tls://nats-a.example:4222", "tls://nats-b.example:4222"]   # a cluster: any of them
    user = "ldc-relay"            # with password; or token; or nkeys_seed; or creds (JWT + nkey)
    password = "..."
    token = "..."
    nkeys_seed = "/etc/ldc/relay.nk"       # file holding the nkey seed
    creds = "/etc/ldc/relay.creds"         # NATS credentials file (decentralised auth)
    tls_ca = "/etc/ldc/ca.pem"             # verify the server with this CA (else the system's)
    tls_cert = "/etc/ldc/client.pem"       # client certificate (mutual TLS), with tls_key
    tls_key = "/etc/ldc/client.key"
    tls_hostname = "nats.example"          # name to verify when it differs from the URL's host
    name = "ldc-relay-spot"                # connection name shown by the server's monitoring

Everything maps onto ``nats.connect``'s own options; nothing here speaks the protocol.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from ldc.errors import ConfigError, LdcError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_URL: Final = "nats://127.0.0.1:4222"
RECONNECT_WAIT_S: Final = 0.25  # between attempts at one server: a restarted server is found fast
CONNECT_TIMEOUT_S: Final = 2.0
PING_INTERVAL_S: Final = 2  # a dead TCP path is noticed after ~2 missed pings (4-6 s)
MAX_OUTSTANDING_PINGS: Final = 2
# publishes buffered while reconnecting: small, since a mirror resyncs from the relay's current state
PENDING_SIZE_BYTES: Final = 1 << 20


class NatsConnectError(LdcError):
    """The NATS server refused us (credentials, TLS): retrying cannot help; the message says why."""


@dataclass(frozen=True)
class NatsOptions:
    servers: tuple[str, ...] = (DEFAULT_URL,)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkeys_seed: str | None = None
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_hostname: str | None = None
    name: str | None = None

    def describe(self) -> str:
        return ", ".join(self.servers)

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"servers": list(self.servers)}
        for key in ("user", "password", "token", "nkeys_seed", "tls_hostname", "name"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        if self.creds is not None:
            kwargs["user_credentials"] = self.creds
        tls = self.tls_context()
        if tls is not None:
            kwargs["tls"] = tls
        return kwargs

    def tls_context(self) -> ssl.SSLContext | None:
        wants_tls = any(s.startswith("tls://") for s in self.servers) or self.tls_ca or self.tls_cert
        if not wants_tls:
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


def options_from_url(url: str, name: str | None = None) -> NatsOptions:
    servers = tuple(u.strip() for u in url.split(",") if u.strip())
    if not servers:
        raise ConfigError(f"--nats: expected a URL such as {DEFAULT_URL}, found {url!r}")
    return NatsOptions(servers=servers, name=name)


def load_options(path: str | Path) -> NatsOptions:
    """The ``[nats]`` table of a TOML file; unknown keys are refused, naming the ones expected."""
    source = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    table = doc.get("nats")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: expected a [nats] table with at least servers = [...]")
    known = {f.name for f in fields(NatsOptions)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{source}: [nats] unknown key {unknown[0]!r}, expected one of {', '.join(sorted(known))}")
    servers = table.get("servers", [DEFAULT_URL])
    if isinstance(servers, str):
        servers = [servers]
    if not servers or not all(isinstance(s, str) for s in servers):
        raise ConfigError(f"{source}: [nats] servers must be a list of URLs, found {servers!r}")
    for key, value in table.items():
        if key != "servers" and not isinstance(value, str):
            raise ConfigError(f"{source}: [nats] {key} must be a string, found {value!r}")
    return NatsOptions(**{**table, "servers": tuple(servers)})


Callback = Callable[[], Awaitable[None]]


def is_refusal(exc: BaseException) -> bool:
    """Errors a retry cannot fix: the server rejected our credentials or our TLS."""
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text or isinstance(exc, ssl.SSLError)


async def connect(
    options: NatsOptions,
    *,
    on_wait: Callable[[str], None],
    disconnected_cb: Callback | None = None,
    reconnected_cb: Callback | None = None,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
) -> Any:
    """Connect, retrying for ever while the servers are unreachable (``on_wait(cause)`` says so at
    each failure), reconnecting for ever afterwards. A refusal (credentials, TLS) raises
    ``NatsConnectError`` naming the servers and the cause instead of retrying."""
    import nats  # the optional extra: imported only by the commands that need it

    refused: list[BaseException] = []
    task: asyncio.Task[Any] | None = None

    async def on_error(exc: Exception) -> None:
        if is_refusal(exc):
            if task is not None and not refused:
                refused.append(exc)
                task.cancel()
            return
        if error_cb is not None:
            await error_cb(exc)
        if task is not None and not task.done():
            on_wait(f"waiting for NATS server {options.describe()}: {_cause(exc)}")
        else:  # slow consumer, a failing callback, a broken connection: never silent
            log.warning("NATS %s: %s", options.describe(), _cause(exc))

    async def noop() -> None:
        return None

    task = asyncio.ensure_future(nats.connect(
        **options.connect_kwargs(),
        error_cb=on_error,
        disconnected_cb=disconnected_cb or noop,
        reconnected_cb=reconnected_cb or noop,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=RECONNECT_WAIT_S,
        connect_timeout=CONNECT_TIMEOUT_S,
        ping_interval=PING_INTERVAL_S,
        max_outstanding_pings=MAX_OUTSTANDING_PINGS,
        pending_size=PENDING_SIZE_BYTES,
    ))
    try:
        return await task
    except asyncio.CancelledError:
        if refused:
            raise NatsConnectError(f"NATS server {options.describe()} refused the connection: {_cause(refused[0])}") from None
        raise


async def connect_until(stop: asyncio.Event, options: NatsOptions, **kwargs: Any) -> Any | None:
    """``connect``, or None when ``stop`` is set first (SIGTERM while the servers are unreachable)."""
    connecting = asyncio.ensure_future(connect(options, **kwargs))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((connecting, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    try:
        await connecting
    except asyncio.CancelledError:
        pass
    return None


def freeze_heap() -> None:
    """Move every object made so far (imports, the connection, subscriptions) to the collector's
    permanent generation: its full passes no longer walk them. Called once a relay or mirror is set
    up; without it, full collections walking nats-py's and asyncio's objects were ~20 % of the relay's
    CPU at 5,000 updates/s (perf, issue 16)."""
    gc.collect()
    gc.freeze()


def connected_url(nc: Any) -> str:
    """The server a client is connected to, for logs."""
    url = nc.connected_url
    return str(url.geturl()) if url is not None else "(not connected)"


def _cause(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
