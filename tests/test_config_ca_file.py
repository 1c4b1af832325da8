"""The group key ``ca_file``: CA certificates trusted for https:// and wss://, checked when the config loads
(a missing, unreadable or certificate-less file is a config error naming the key, before anything starts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ldc.config import parse_config, restart_keys
from ldc.errors import ConfigError
from ldc.sim.tls import make_sim_tls


def _config(ca_file: str) -> str:
    return f'[[group]]\nname = "g1"\nexchange = "binance.com"\nsymbols = ["BTCUSDT"]\nca_file = "{ca_file}"\n'


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="ldc.toml")
    return str(info.value)


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_sim_tls(str(tmp_path_factory.mktemp("pki"))).ca_file


def test_a_pem_ca_file_is_kept_and_its_change_needs_a_restart(ca_pem: str) -> None:
    group = parse_config(_config(ca_pem)).group("g1")
    assert group.ca_file == ca_pem
    plain = parse_config(_config(ca_pem).replace(f'ca_file = "{ca_pem}"\n', "")).group("g1")
    assert plain.ca_file is None  # the system's trust store
    assert restart_keys(plain, group) == ("ca_file",)


def test_a_missing_file_names_the_key_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    assert _error(_config(str(missing))) == (
        f"ldc.toml: group 'g1': key 'ca_file' expected a readable file, found '{missing}': No such file or directory"
    )


def test_a_directory_is_not_a_ca_file(tmp_path: Path) -> None:
    assert _error(_config(str(tmp_path))).startswith(f"ldc.toml: group 'g1': key 'ca_file' expected a readable file, found '{tmp_path}'")


def test_a_file_without_certificates_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert _error(_config(str(junk))).startswith(f"ldc.toml: group 'g1': key 'ca_file' expected PEM CA certificates, found '{junk}' with none")


def test_a_file_the_feeders_user_cannot_read_is_refused(tmp_path: Path, ca_pem: str) -> None:
    """Root reads any file: the check runs as ``nobody``, for whom a 0600 root file is unreadable."""
    private = tmp_path / "ca.pem"
    private.write_bytes(Path(ca_pem).read_bytes())
    private.chmod(0o600)
    tmp_path.chmod(0o755)
    probe = (
        "from ldc.config import parse_config\nfrom ldc.errors import ConfigError\n"
        f"try:\n    parse_config({_config(str(private))!r}, source='ldc.toml')\nexcept ConfigError as e:\n    print(e)\n"
    )
    done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", probe],
                          capture_output=True, text=True, timeout=60, cwd="/")  # fmt: skip
    assert done.stdout.strip() == f"ldc.toml: group 'g1': key 'ca_file' expected a readable file, found '{private}': Permission denied", done.stderr


def test_a_relative_path_is_refused() -> None:
    assert _error(_config("certs/ca.pem")) == "ldc.toml: group 'g1': key 'ca_file' expected an absolute path, found 'certs/ca.pem'"


def test_an_empty_or_non_string_value_is_refused() -> None:
    assert _error(_config("")) == "ldc.toml: group 'g1': key 'ca_file' expected a non-empty string, found ''"
    text = '[[group]]\nname = "g1"\nexchange = "binance.com"\nsymbols = ["BTCUSDT"]\nca_file = 1\n'
    assert _error(text) == "ldc.toml: group 'g1': key 'ca_file' expected a non-empty string, found 1"
