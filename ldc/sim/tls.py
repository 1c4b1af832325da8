"""TLS for ``ldc sim --tls``: a throw-away certificate authority and a server certificate for the loopback.

Live exchanges speak only ``https://`` and ``wss://``; with ``SimConfig(tls=True)`` every port the simulator
opens (Binance's and each venue family's) speaks TLS, so the clients, tests and benchmarks pay for it as
they do against the exchange. At start a new CA (its own random name, so two simulators never trust each
other) signs one server certificate for ``IP:127.0.0.1`` and ``DNS:localhost``; a client trusts the CA file
(``"ca_file"`` in ``ldc sim``'s first line, ``ca_file`` in a group's config) and verifies the host name as
against the exchange. Nothing is weakened on either side: TLS 1.2 at least, the ssl module's defaults.

The keys are made by the ``openssl`` command line (present wherever Python's ssl module was built against
OpenSSL, so no package is added for it): EC P-256, which takes milliseconds, valid for a few days, written
into a directory only this user can read (``tempfile.mkdtemp`` makes it 0700).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass

from ldc.errors import SimError

VALID_DAYS = 7  # a simulator's certificates never outlive a test run by much
OPENSSL_TIMEOUT_S = 30.0  # each command takes milliseconds; this only bounds a hung one
CURVE = "prime256v1"  # P-256: key generation in milliseconds, what most exchanges' certificates use
SERVER_NAMES = "IP:127.0.0.1,DNS:localhost"  # the simulator listens on 127.0.0.1 only
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "server.pem", "server.key"

# One minimal config per certificate, so no system openssl.cnf default changes what is made.
_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = ca
[dn]
CN = {name}
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
_SERVER_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = 127.0.0.1
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {names}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True, slots=True)
class SimTls:
    """The files of one simulator's PKI: ``ca_file`` is what clients trust."""

    directory: str
    ca_file: str
    cert_file: str
    key_file: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def drop(writer: asyncio.StreamWriter) -> None:
    """End a connection at the simulator's stop. A TLS close waits for the peer's close_notify, which an idle
    keep-alive client never sends: the stop must not wait for it, so a TLS connection is aborted."""
    if writer.get_extra_info("ssl_object") is not None:
        writer.transport.abort()
    else:
        writer.close()


def schemes(tls: bool) -> tuple[str, str]:
    """(REST scheme, websocket scheme)."""
    return ("https", "wss") if tls else ("http", "ws")


def make_sim_tls(directory: str) -> SimTls:
    """A new CA and a server certificate for the loopback, signed by it, written into ``directory``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SimError("--tls needs the openssl command line to make its certificates, found none on PATH")

    def path(name: str) -> str:
        return os.path.join(directory, name)

    ca_name = f"ldc sim test CA {secrets.token_hex(8)}"  # unique: another simulator's CA must not match
    _write(path("ca.cnf"), _CA_CONFIG.format(name=ca_name))
    _write(path("server.cnf"), _SERVER_CONFIG.format(names=SERVER_NAMES))
    new_key = ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{CURVE}", "-nodes"]
    _run([openssl, "req", "-x509", *new_key, "-keyout", path("ca.key"), "-out", path(CA_FILE),
          "-days", str(VALID_DAYS), "-config", path("ca.cnf")])  # fmt: skip
    _run([openssl, "req", "-new", *new_key, "-keyout", path(KEY_FILE), "-out", path("server.csr"), "-config", path("server.cnf")])
    _run([openssl, "x509", "-req", "-in", path("server.csr"), "-CA", path(CA_FILE), "-CAkey", path("ca.key"),
          "-set_serial", str(secrets.randbits(63)), "-days", str(VALID_DAYS), "-out", path(CERT_FILE),
          "-extfile", path("server.cnf"), "-extensions", "server"])  # fmt: skip
    os.remove(path("ca.key"))  # nothing more is signed: the CA's key is not kept
    return SimTls(directory=directory, ca_file=path(CA_FILE), cert_file=path(CERT_FILE), key_file=path(KEY_FILE))


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(text)


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SimError(f"--tls: {' '.join(argv[:2])} failed: {exc}") from exc
    if done.returncode != 0:
        raise SimError(f"--tls: {' '.join(argv[:2])} exited {done.returncode}: {done.stderr.strip()[-400:]}")
