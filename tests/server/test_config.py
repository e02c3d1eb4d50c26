"""One configuration: every QRC_* variable read and checked in one place, documented."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from qrc.server.config import ConfigurationError, Settings, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_environment_reaches_plain_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QRC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QRC_CUSTODY", "PKCS11")
    monkeypatch.setenv("QRC_PKCS11_TOKEN", "hsm")
    monkeypatch.setenv("QRC_PKCS11_PIN", "1234")
    monkeypatch.setenv("QRC_DESTRUCTION_DELAY_DAYS", "3")
    monkeypatch.setenv("QRC_SQLITE_SYNCHRONOUS", "full")
    settings = load_settings()
    config = settings.service_config()
    assert config.data_dir == tmp_path and config.custody.kind == "pkcs11"
    assert config.custody.pkcs11().pin == "1234"
    assert config.destruction_delay == timedelta(days=3) and config.sqlite_synchronous == "FULL"
    assert "1234" not in repr(settings) and "1234" not in repr(config)
    # An option given on the command line wins over the environment.
    assert load_settings(data_dir=tmp_path / "other").data_dir == tmp_path / "other"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("QRC_CUSTODY", "vault"),
        ("QRC_DESTRUCTION_DELAY_DAYS", "-1"),
        ("QRC_SQLITE_SYNCHRONOUS", "OFF"),
        ("QRC_MAX_BODY_BYTES", "lots"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings()


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QRC_MAX_BODY_BYTES", "s3cret-value")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "s3cret-value" not in str(info.value)


def test_production_refuses_the_generated_master_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"QRC_MASTER_PASSPHRASE.*--dev"):
        Settings(data_dir=tmp_path).check_production()
    Settings(data_dir=tmp_path, dev=True).check_production()
    Settings(data_dir=tmp_path, master_passphrase="long passphrase").check_production()  # type: ignore[arg-type]
    Settings(data_dir=tmp_path, custody="pkcs11").check_production()


def test_every_setting_is_in_the_documented_table() -> None:
    documented = set(re.findall(r"^\| `(QRC_[A-Z0-9_]+)` \|", DOCS.read_text(), re.MULTILINE))
    fields = {f"QRC_{name.upper()}" for name in Settings.model_fields}
    assert fields <= documented, fields - documented
    client_side = {"QRC_URL", "QRC_TOKEN", "QRC_CA_FILE"}
    assert documented - fields <= client_side, documented - fields - client_side


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """``X=${X}`` in a deployment file passes empty values: they take the defaults."""
    for name in ("DESTRUCTION_DELAY_DAYS", "RATE_LIMIT", "MAX_BODY_BYTES", "BENCH_ON_START",
                 "SQLITE_SYNCHRONOUS", "CUSTODY", "DEV", "DATABASE_URL", "PKCS11_PIN"):  # fmt: skip
        monkeypatch.setenv(f"QRC_{name}", "")
    settings = load_settings()
    assert settings.custody == "local" and settings.rate_limit == 500.0
    assert settings.database_url is None and settings.pkcs11_pin is None
    monkeypatch.setenv("QRC_MASTER_PASSPHRASE", "")
    with pytest.raises(ConfigurationError, match="QRC_MASTER_PASSPHRASE"):
        load_settings()
