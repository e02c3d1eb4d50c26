"""The risk model's file (QRC_RISK_FILE): TOML or JSON over the defaults, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrc.monitor.risk_config import (
    DEFAULT_HORIZONS,
    DEFAULT_LIFETIMES,
    RiskConfigError,
    load_risk_config,
)
from qrc.server.config import ConfigurationError, load_settings

TOML = """
default_lifetime_years = 12
migration_lead_time_years = 2.5
[lifetimes]
payment_token = 0.5
mortgage_file = 30
[horizons.median]
year = 2033
source = "our threat-intelligence review, 2026"
"""


def test_defaults_are_sourced_and_ordered() -> None:
    config = load_risk_config()
    assert [h.name for h in config.horizons] == ["low", "median", "high"]
    assert [h.year for h in config.horizons] == sorted(h.year for h in config.horizons)
    assert all(len(h.source) > 40 for h in DEFAULT_HORIZONS)
    assert "Global Risk Institute" in config.horizon("low").source
    assert config.lifetime("database_record", None) == (10.0, "database_record")
    assert config.lifetime("sql-column", "pii") == (25.0, "pii")  # the longer one wins
    assert config.lifetime("never-heard-of", None) == (10.0, "default")
    assert all(reason for _years, reason in DEFAULT_LIFETIMES.values())
    assert config.migration_years is None and config.source == "built-in defaults"


def test_toml_and_json_files_over_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "risk.toml"
    path.write_text(TOML)
    config = load_risk_config(path)
    assert config.lifetime("mortgage_file") == (30.0, "mortgage_file")
    assert config.lifetime("payment_token") == (0.5, "payment_token")
    assert config.lifetime("unknown-type") == (12.0, "default")
    assert config.lifetime("model_file") == (5.0, "model_file")  # untouched default
    median = config.horizon("median")
    assert (median.year, median.source) == (2033.0, "our threat-intelligence review, 2026")
    assert config.horizon("low") == DEFAULT_HORIZONS[0]
    assert config.migration_lead_time_years == 2.5 and config.source == str(path)

    as_json = tmp_path / "risk.json"
    as_json.write_text(json.dumps({"migration_years": 3, "lifetimes": {"backup": 15}}))
    config = load_risk_config(as_json, migration_years=None)
    assert config.migration_years == 3.0 and config.lifetime("backup") == (15.0, "backup")
    # QRC_RISK_MIGRATION_YEARS wins over the file
    assert load_risk_config(as_json, migration_years=6).migration_years == 6.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("lifetimes = 3", "lifetimes must be a table"),
        ("[lifetimes]\npii = -1", "lifetimes.pii must be between 0 and 200"),
        ('[lifetimes]\npii = "long"', "lifetimes.pii must be a number"),
        ("[lifetimes]\n'Bad Name' = 1", "not a data type name"),
        ("[horizons.median]\nyear = 2031", "horizons.median.source is required"),
        ("[horizons.soon]\nyear = 2028\nsource = 'x'", "horizons.soon: unknown"),
        ("[horizons.low]\nyear = 2040\nsource = 'x'", "horizons must be in order"),
        ("[horizons.high]\nyear = 12000\nsource = 'x'", "year must be between 1900 and 2300"),
        ("[horizons.low]\nyear = 2031\nsource = 'x'\nprobability = 0.1", "unknown field"),
        ("migration_years = inf", "migration_years must be between"),
        ("horizon = 2030", "unknown setting(s) horizon"),
        ("[lifetimes\n", "not valid TOML"),
    ],
)
def test_bad_files_say_what_to_fix(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "risk.toml"
    path.write_text(content)
    with pytest.raises(RiskConfigError) as info:
        load_risk_config(path)
    assert message in str(info.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(RiskConfigError, match="No such file"):
        load_risk_config(tmp_path / "absent.toml")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(RiskConfigError, match="not UTF-8"):
        load_risk_config(tmp_path / "bin.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(RiskConfigError, match="not valid JSON"):
        load_risk_config(tmp_path / "bad.json")


def test_settings_check_the_file_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "risk.toml"
    bad.write_text("[horizons.median]\nyear = 2031\n")
    monkeypatch.setenv("QRC_RISK_FILE", str(bad))
    with pytest.raises(ConfigurationError, match=r"QRC_RISK_FILE: .*source is required"):
        load_settings()
    bad.write_text(TOML)
    monkeypatch.setenv("QRC_RISK_MIGRATION_YEARS", "2")
    settings = load_settings()
    assert settings.risk_file == bad and settings.risk_migration_years == 2.0
    monkeypatch.setenv("QRC_RISK_MIGRATION_YEARS", "-1")
    with pytest.raises(ConfigurationError, match="QRC_RISK_MIGRATION_YEARS"):
        load_settings()
