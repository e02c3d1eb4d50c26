"""The one configuration of a qrc process: every ``QRC_*`` variable, read and checked here.

:class:`Settings` is pydantic-settings over the environment (prefix ``QRC_``); command-line
options override it field by field. The rest of the code receives plain values
(:class:`qrc.keys.factory.ServiceConfig`, :class:`qrc.api.deps.ApiSettings`), never the
environment. ``docs/configuration.md`` has the table; a test keeps it and this class in step.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qrc.api.deps import ApiSettings
from qrc.keys.custody.factory import CustodyConfig
from qrc.keys.custody.local import PASSPHRASE_FILE
from qrc.keys.factory import DEFAULT_DATA_DIR, ServiceConfig
from qrc.transit.asgi import ServerOptions

__all__ = ["ConfigurationError", "Settings", "load_settings"]


class ConfigurationError(Exception):
    """The configuration is invalid or unsafe; the message says what to set."""


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


class Settings(BaseSettings):
    """Every setting of the key service, its command line and its API."""

    model_config = SettingsConfigDict(
        env_prefix="QRC_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # -- where things are
    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Data directory (SQLite store, KEK files, TLS, admin token)."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the store; default SQLite in the data directory."
    )
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        "NORMAL", description="SQLite durability: FULL syncs every commit."
    )
    # -- root KEK custody
    custody: Literal["local", "pkcs11"] = Field("local", description="Where the root KEK is.")
    master_passphrase: SecretStr | None = Field(
        None, description="Passphrase the local root KEK is sealed under (required unless --dev)."
    )
    pkcs11_module: str = Field(
        "/usr/lib/softhsm/libsofthsm2.so", description="PKCS#11 library of the HSM."
    )
    pkcs11_token: str | None = Field(None, description="Label of the PKCS#11 token.")
    pkcs11_pin: SecretStr | None = Field(None, description="User PIN of the token.")
    pkcs11_key_label: str = Field("qrc-root-kek", description="Label of the KEK in the token.")
    # -- audit trail
    audit_anchor: Path | None = Field(
        None, description="File of pinned audit public keys; default DATA_DIR/audit-keys.jsonl."
    )
    audit_witness: Path | None = Field(
        None,
        description="Witness file of the latest checkpoint; default DATA_DIR/audit-witness.note.",
    )
    checkpoint_seconds: float = Field(
        5.0, gt=0, description="Most seconds between new audit events and their checkpoint."
    )
    checkpoint_events: int = Field(
        100, ge=1, description="Most new audit events before a checkpoint is made."
    )
    # -- key lifecycle
    destruction_delay_days: float = Field(
        7.0, ge=0, description="Default waiting period before a key is destroyed."
    )
    min_destruction_delay_days: float = Field(
        1.0, gt=0, description="Shortest waiting period a caller may ask for (never zero)."
    )
    # -- the server
    dev: bool = Field(False, description="Development mode: allows the generated master.key.")
    ca_passphrase: SecretStr | None = Field(
        None, description="Passphrase protecting the private CA's key file."
    )
    tls_mode: Literal["pq-only", "hybrid-preferred"] | None = Field(
        None,
        description="TLS key-exchange policy of the listener; default: the stored policy's.",
    )
    tls_certificates: Literal["ml-dsa", "dual", "ecdsa"] = Field(
        "dual", description="Server certificates: ML-DSA-65, ECDSA P-256, or both (dual)."
    )
    tls_cert_days: float = Field(
        90.0, gt=0, description="Lifetime of server certificates; renewed with a third left."
    )
    tls_client_auth: Literal["off", "optional"] = Field(
        "optional",
        description="Mutual TLS: ask for client certificates from the private CA (qrc ca init).",
    )
    tls_check_seconds: float = Field(
        30.0, gt=0, description="Seconds between checks of certificate expiry and TLS mode."
    )
    tls_event_seconds: float = Field(
        60.0,
        ge=0,
        description="Classical or refused handshakes: at most one security event per kind and "
        "detail in this many seconds, then one with the count left out (0: one per handshake).",
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body accepted.")
    rate_limit: float = Field(
        500.0, ge=0, description="Requests per second per token (0: no limit)."
    )
    rate_burst: float = Field(1000.0, gt=0, description="Burst of requests per token.")
    auth_failure_rate: float = Field(
        1.0, ge=0, description="Failed authentications per second per source address (0: no limit)."
    )
    auth_failure_burst: float = Field(
        20.0, gt=0, description="Burst of failed authentications per source before 429."
    )
    header_timeout: float = Field(
        15.0, gt=0, description="Seconds a client has to send its request line and headers."
    )
    max_connections_per_source: int = Field(
        256, ge=1, description="Open connections one source address may hold."
    )
    max_connections: int = Field(4096, ge=1, description="Open connections in all.")
    bench_on_start: bool = Field(
        True, description="Measure the quick benchmark set at the first start."
    )
    # -- threat feed (qrc.monitor.feed)
    feed_publisher_key: Path | None = Field(
        None,
        description="Publisher public key (SPKI PEM/DER, ML-DSA or SLH-DSA) threat feeds "
        "must be signed with; unset: no threat feed.",
    )
    feed_url: str | None = Field(
        None, description="The signed threat feed to fetch: an https:// URL or a file path."
    )
    feed_interval_seconds: float = Field(
        3600.0, ge=10, description="Seconds between threat feed passes (fetch, apply due dates)."
    )
    feed_ca_file: Path | None = Field(
        None, description="CA certificates of a private HTTPS feed server (default: system)."
    )
    # -- event sinks (qrc.monitor.sinks)
    webhook_url: str | None = Field(
        None, description="Webhook sink: HTTPS URL that receives each event as a signed POST."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 secret of the webhook signatures (whsec_<base64> or text)."
    )
    webhook_signing_key: Path | None = Field(
        None, description="ML-DSA private key (PKCS#8 PEM) that also signs each webhook delivery."
    )
    webhook_ca_file: Path | None = Field(
        None, description="CA certificates the webhook's TLS server must chain to (default: OS)."
    )
    webhook_tls_mode: Literal["pq-only", "hybrid-preferred"] = Field(
        "hybrid-preferred", description="Key exchange the webhook's TLS must use."
    )
    syslog_address: str | None = Field(
        None, description="Syslog sink (RFC 5424): udp://HOST:514, tcp://HOST:601, tls://HOST:6514."
    )
    syslog_ca_file: Path | None = Field(
        None, description="CA certificates the syslog TLS receiver must chain to (default: system)."
    )
    syslog_facility: int = Field(
        10, ge=0, le=23, description="Syslog facility number (10: security/authorization)."
    )
    sink_queue_size: int = Field(
        10000, ge=1, description="Events each sink holds while its receiver is unreachable."
    )
    sink_retry_seconds: float = Field(
        0.5, gt=0, description="First wait before a failed delivery is retried (then doubled)."
    )
    sink_max_retry_seconds: float = Field(
        60.0, gt=0, description="Longest wait between delivery retries."
    )
    sink_timeout_seconds: float = Field(
        10.0, gt=0, description="Seconds a sink waits to connect or for an answer."
    )
    # -- anomaly detection (qrc.monitor.anomaly)
    anomaly_enabled: bool = Field(
        True, description="Anomaly detection over key uses and TLS/auth events (qrc.monitor)."
    )
    anomaly_window_seconds: float = Field(
        60.0, ge=10, le=3600, description="Length of the windows anomalies are counted in."
    )
    anomaly_train_days: float = Field(
        14.0, gt=0, le=90, description="Days of audit history the detector learns from."
    )
    anomaly_contamination: float = Field(
        0.01, gt=0, le=0.5, description="Share of history windows the forest calls outliers."
    )
    anomaly_min_windows: int = Field(
        200, ge=2, description="Active windows of history needed before the detector scores."
    )
    anomaly_retrain_hours: float = Field(
        24.0, gt=0, description="Hours between retrainings on the latest history."
    )
    # -- risk (qrc.monitor.risk)
    risk_file: Path | None = Field(
        None,
        description="TOML or JSON file of the risk model: data lifetimes, quantum-threat "
        "horizons with their sources, migration lead time (docs/risk.md).",
    )
    risk_migration_years: float | None = Field(
        None,
        ge=0,
        le=200,
        description="Migration time y in years; unset: lead time plus measured migration work.",
    )

    @field_validator("risk_file")
    @classmethod
    def _risk_file_is_usable(cls, value: Path | None) -> Path | None:
        # Checked at start-up, so that a typo stops the process with what to fix.
        if value is not None:
            from qrc.monitor.risk_config import load_risk_config  # noqa: PLC0415

            load_risk_config(value)  # RiskConfigError is a ValueError: names the problem
        return value

    # -- tests only
    test_fault: str | None = Field(
        None, description="Crash-test hook: the process exits at this named fault point."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        # Deployment files often pass variables through empty (X=${X}): an empty value means
        # "not set", except for the master passphrase, where it is a mistake worth stopping on.
        if value != "":
            return value
        if info.field_name == "master_passphrase":
            raise ValueError("is set but empty: unset it or give the passphrase")
        field = cls.model_fields[info.field_name or ""]
        return field.get_default(call_default_factory=True)

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("custody", "tls_mode", "tls_certificates", "tls_client_auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    # ------------------------------------------------------------------ plain values down
    def custody_config(self) -> CustodyConfig:
        """Where the root KEK is, as the key service takes it."""
        return CustodyConfig(
            kind=self.custody,
            master_passphrase=_secret(self.master_passphrase),
            pkcs11_module=self.pkcs11_module,
            pkcs11_token=self.pkcs11_token,
            pkcs11_pin=_secret(self.pkcs11_pin),
            pkcs11_key_label=self.pkcs11_key_label,
        )

    def service_config(self) -> ServiceConfig:
        """What :func:`qrc.keys.factory.open_service` takes."""
        return ServiceConfig(
            data_dir=self.data_dir,
            database_url=self.database_url,
            custody=self.custody_config(),
            destruction_delay=timedelta(days=self.destruction_delay_days),
            min_destruction_delay=timedelta(days=self.min_destruction_delay_days),
            sqlite_synchronous=self.sqlite_synchronous,
            test_fault=self.test_fault,
            audit_anchor=self.audit_anchor,
            audit_witness=self.audit_witness,
        )

    def api_settings(self, tls_mode: str) -> ApiSettings:
        """Limits and switches of the API."""
        return ApiSettings(
            max_body_bytes=self.max_body_bytes,
            rate_limit_per_second=self.rate_limit,
            rate_limit_burst=self.rate_burst,
            auth_failure_rate=self.auth_failure_rate,
            auth_failure_burst=self.auth_failure_burst,
            tls_mode=tls_mode,
        )

    def server_options(self, max_body_bytes: int) -> ServerOptions:
        """The transport's limits (``max_body_bytes``: what it refuses outright)."""
        return ServerOptions(
            max_body_bytes=max_body_bytes,
            header_timeout=self.header_timeout,
            max_connections_per_source=self.max_connections_per_source,
            max_connections=self.max_connections,
        )

    def check_production(self) -> None:
        """Refuse what is only safe in development, unless ``dev`` says it is development.

        Raises:
            ConfigurationError: the local root KEK would be sealed under the generated
                ``master.key`` that lies next to it.
        """
        if self.dev or self.custody != "local" or self.master_passphrase is not None:
            return
        raise ConfigurationError(
            "the root KEK would be sealed under the generated "
            f"{self.data_dir / PASSPHRASE_FILE}, which anyone who can read the data directory "
            "can use: set QRC_MASTER_PASSPHRASE (or QRC_CUSTODY=pkcs11), or run "
            "`qrc serve --dev` to say this is development"
        )


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment, with ``overrides`` (set options) on top.

    Raises:
        ConfigurationError: a variable has an invalid value (the message names it).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"QRC_{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
