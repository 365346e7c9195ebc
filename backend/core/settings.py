"""The one settings object: `MANI_*` environment variables over an optional TOML file.

Company overrides live in the database (see `backend.companies.catalogue`); this module only
knows the process-wide configuration.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from platformdirs import user_config_dir, user_data_dir
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

JOB_TYPES = ("welcome_std", "welcome_lic", "reengagement", "reminder", "certificate")


def config_file_candidates() -> list[Path]:
    """Where a config file is looked for, first match wins."""
    explicit = os.environ.get("MANI_CONFIG")
    if explicit:
        return [Path(explicit)]
    return [Path(user_config_dir("mani")) / "mani.toml", Path("/etc/mani/mani.toml")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MANI_", extra="ignore", validate_default=True)

    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("mani")))
    database_url: str | None = None
    redis_url: str | None = None
    # Keys in Redis are namespaced so that several mani installs (or test runs) share one Redis.
    redis_namespace: str = "mani"

    # The seeds' global settings (seed 002 section 3); each can be overridden in the database
    # (`mani settings set`) and per company (`mani companies set`).
    cloud_offload_enabled: bool = True
    cloud_mode: str = "workers"
    cloud_callback_secret: str | None = None
    presigned_url_ttl: int = Field(default=604800, ge=1, le=604800)
    certificate_generation_mode: str = "cloud_if_enabled"
    cloud_fallback_behavior: str = "queue_local"
    # mani's public base URL: the cloud worker's callbacks come to {public_url}/api/v1/callbacks.
    public_url: str | None = None
    # Seconds a batch handed to a company's cloud worker may go unreported before it is flagged stuck.
    cloud_stuck_after: int = Field(default=3600, ge=60)
    storage_backend: str = "local"

    email_provider: str = "outbox"
    smtp_url: str | None = None
    smtp_timeout: float = 30.0
    outbox_dir: Path | None = None
    sender: str = "mani <noreply@mani.localhost>"

    batch_size: int = Field(default=200, ge=1, le=5000)
    # Seconds to wait before retry 1, 2, 3...; after the last one a recipient is permanently failed.
    retry_schedule: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [5, 30, 120])
    duplicate_window_hours: float = 24.0
    max_field_length: int = 1000
    max_csv_bytes: int = 200 * 1024 * 1024

    # Crash safety: a worker commits results every `commit_every` sends, holds a batch for
    # `batch_lease_seconds` (renewed on every commit), and a batch is given up on after
    # `max_batch_attempts` claims.
    commit_every: int = Field(default=50, ge=1)
    batch_lease_seconds: int = Field(default=30, ge=1)
    max_batch_attempts: int = Field(default=5, ge=1)
    requeue_after_seconds: int = Field(default=300, ge=1)
    sweep_interval_seconds: float = Field(default=2.0, gt=0)
    broker_heartbeat_timeout_ms: int = 15_000
    # Outages (backend.delivery.circuit): a provider that is unreachable or failing for everyone
    # opens its route's circuit; batches wait `outage_backoff_seconds`, doubling up to
    # `outage_backoff_max_seconds`, and count no attempt. After `max_outage_hours` the jobs
    # waiting on it fail with the reason. `outage_transient_run` temporary failures in a row,
    # with nothing sent between them, count as an outage too.
    max_outage_hours: float = Field(default=24.0, gt=0)
    outage_backoff_seconds: float = Field(default=5.0, gt=0)
    outage_backoff_max_seconds: float = Field(default=300.0, gt=0)
    outage_transient_run: int = Field(default=10, ge=2)

    # Moodle/IOMAD as a recipient source (`mani moodle`, `mani submit --moodle`, schedules): its
    # database, read-only (a secret: encrypted at rest when stored in the database, masked
    # everywhere), the table prefix, and the site's address for course links. Companies may
    # override all three (the settings catalogue).
    moodle_database_url: str | None = None
    moodle_table_prefix: str = "mdl_"
    moodle_site_url: str | None = None

    site_name: str = "Moodle"
    login_url: str = "http://localhost/login/index.php"
    template_dir: Path | None = None

    # Certificates: where a code is verified, fonts beyond the bundled Noto ones, extra templates,
    # processes that render them (0: one per core), and local storage (an http base URL makes
    # local certificate links public).
    # `mani serve` answers /verify/{code}; set the public URL it is reached at.
    certificate_verify_url: str = "http://localhost:8080/verify/{code}"
    certificate_fallback_font: str | None = None
    certificate_template_dir: Path | None = None
    certificate_render_processes: int = Field(default=0, ge=0)
    storage_dir: Path | None = None
    public_base_url: str | None = None

    # HTTP API (`mani serve`) and callbacks to Moodle.
    api_max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    api_max_event_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    api_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Hosts (names, name:port, addresses or networks) mani may send to although they are not
    # public addresses (backend.core.outbound): an intranet Moodle, local test servers.
    allowed_callback_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mailgun_webhook_signing_key: str | None = None
    mailgun_webhook_max_age: int = 86400
    sns_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
    sns_topic_arns: Annotated[list[str], NoDecode] = Field(default_factory=list)
    callback_retry_schedule: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [5, 30, 120, 600, 3600, 21600, 86400]
    )
    # A callback waits at most `callback_connect_timeout` for Moodle to accept the connection and
    # `callback_timeout` in all; `callback_threads` per worker process deliver them, apart from
    # the threads that send mail.
    callback_timeout: float = 15.0
    callback_connect_timeout: float = 3.0
    callback_threads: int = Field(default=4, ge=1)
    callback_max_updates: int = Field(default=1000, ge=1)

    secret_key: str | None = None
    secret_key_file: Path | None = None

    log_level: str = "INFO"

    @field_validator("api_trusted_proxies", "sns_topic_arns", "allowed_callback_hosts", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("retry_schedule", "callback_retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = next((path for path in config_file_candidates() if path.is_file()), None)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    # Derived values -------------------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'mani.db'}"

    @property
    def is_embedded_database(self) -> bool:
        return not self.database_url

    @property
    def effective_outbox_dir(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def effective_secret_key_file(self) -> Path:
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def sender_domain(self) -> str:
        address = self.sender.rsplit("<", 1)[-1].rstrip(">").strip()
        return address.rsplit("@", 1)[-1] or "mani.localhost"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
