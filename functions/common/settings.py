"""Configuration read once from the environment into a frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_HOME = Path(".faasinfer")


def local_database_url(home: Path = DEFAULT_HOME) -> str:
    """The embedded results store: a SQLite file in ``home``."""
    return f"sqlite+aiosqlite:///{home / 'faasinfer.db'}"


def local_blob_url(home: Path = DEFAULT_HOME) -> str:
    """The embedded blob store: a folder in ``home``."""
    return f"file://{home / 'blobs'}"


class Settings(BaseSettings):
    """Every knob of every function; unset values fall back to the embedded local defaults."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    database_url: str = ""  # empty (as an unset template parameter arrives): local_database_url(), off Lambda only
    database_secret_arn: str | None = None  # when set, the MariaDB URL comes from this Secrets Manager secret
    database_proxy_endpoint: str = ""  # an RDS Proxy (or other) host that replaces the secret's host
    database_pool_size: int = Field(default=2, ge=1, le=20)  # connections per execution environment
    blob_url: str = Field(default_factory=local_blob_url)
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_auth: str = "PLAINTEXT"  # functions.common.kafka_edge.auth: PLAINTEXT, TLS, SASL_SCRAM_512, MSK_IAM
    kafka_secret_arn: str = ""  # SASL_SCRAM_512: Secrets Manager secret {"username", "password"}
    kafka_tls: bool = True  # SASL_SCRAM_512 over TLS (SASL_SSL); false: SASL_PLAINTEXT
    kafka_ca_file: str = ""  # TLS: a private CA bundle; empty: the system's
    aws_region: str = ""  # set by Lambda; MSK_IAM signs its tokens for this region
    request_topic: str = "inference-request"
    result_topic: str = "inference-result"
    dlq_topic: str = "inference-dlq"

    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=40_000_000, gt=0)
    max_image_side: int = Field(default=20_000, gt=0)
    max_aspect_ratio: float = Field(default=20.0, ge=1)  # long side / short side; beyond it preprocessing explodes
    max_jpeg_scans: int = Field(
        default=100, gt=0
    )  # progressive passes over every block (functions.common.image_structure)
    upload_decode_slots: int = Field(default=2, gt=0)  # concurrent full decodes at upload, per process
    upload_decode_wait_s: float = Field(default=0.0, ge=0)  # a decode waits this long for a slot, then 503
    max_range: int = Field(default=1000, gt=0)
    max_batch_files: int = Field(default=64, gt=0)
    max_batch_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    upload_staging_url: str = ""  # s3://bucket/prefix for presigned uploads; empty: POST /upload-url is a 503
    s3_endpoint_url: str = ""  # an S3-compatible endpoint instead of AWS's (the local runtime's moto server)
    presign_expires_s: int = Field(default=900, gt=0)  # how long a presigned upload may take to start
    blob_expire_on_done: bool = False  # collect deletes an image once its result is stored
    api_key: str | None = None
    metrics_output: Literal["prometheus", "emf"] = "prometheus"  # emf: CloudWatch embedded metric format (Lambda)
    publish_timeout_s: float = Field(default=10.0, gt=0)

    sweep_after_s: float = Field(default=60.0, ge=0)  # a request queued this long is published again
    sweep_batch: int = Field(default=500, gt=0)
    max_attempts: int = Field(default=5, ge=0)  # sweeper re-publishes per request; then it is failed, saying why
    health_queued_limit_s: float = Field(default=120.0, gt=0)  # /health is degraded while a request waits longer

    aws_lambda_function_name: str | None = None  # set by Lambda (and by the local runtime per function)

    infer_model: str = "efficientnet_lite0"  # functions.infer.catalog: the packaged Lite0, torchvision names, a file
    infer_weights: str = "DEFAULT"
    infer_labels: str = ""  # JSON labels of a model file or state dict; empty: the model's own
    infer_fallback: str = "efficientnet_lite0"  # used when torchvision's weights cannot be had; empty: fail
    infer_max_batch: int = Field(default=8, gt=0)
    infer_threads: int = Field(default=1, gt=0)
    infer_decode_workers: int = Field(default=2, gt=0)
    infer_decode_budget_s: float = Field(default=10.0, gt=0)  # CPU seconds per image's decode; beyond: failed
    # functions.infer.engines: checked when the model loads, which names what is valid (bench/accuracy.py chose it)
    infer_backend: str = "onnxruntime"  # torch | onnxruntime
    infer_precision: str = "fp32"  # fp32 | bf16 (torch) | int8 (onnxruntime)
    infer_engine_cache: str = ""  # where exported engines are kept; empty: .faasinfer/engines
    infer_engine_url: str = ""  # s3://bucket/prefix: engines read from S3 at init when the cache has none
    infer_calibration_dir: str = ""  # int8: photos to calibrate on; empty: the demo photos of a checkout

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _FunctionEnvironment(settings_cls)


# The environment of the function the current thread runs. On Lambda (and in the artifact tests) it is unset and
# the process environment is the function's own; the local runtime runs several functions in one process and gives
# each handler thread its function's environment here, so no function sees another's variables and nothing writes
# os.environ.
_function_environment: ContextVar[Mapping[str, str] | None] = ContextVar("function_environment", default=None)


class _FunctionEnvironment(EnvSettingsSource):
    def _load_env_vars(self) -> Mapping[str, str | None]:
        environment = _function_environment.get()
        if environment is None:
            return super()._load_env_vars()
        return {key.lower(): value for key, value in environment.items()}


def use_function_environment(environment: Mapping[str, str]) -> None:
    """From now on this thread (and the tasks it starts) reads its settings from ``environment``."""
    _function_environment.set(MappingProxyType(dict(environment)))


def settings_from(environment: Mapping[str, str]) -> Settings:
    """The settings a function with this environment reads (for the runtime that places it)."""
    token = _function_environment.set(MappingProxyType(dict(environment)))
    try:
        return Settings()
    finally:
        _function_environment.reset(token)


def get_settings() -> Settings:
    """The settings of the function this thread runs, read once per environment."""
    environment = _function_environment.get()
    return _settings(None if environment is None else frozenset(environment.items()))


@lru_cache(maxsize=64)
def _settings(environment: frozenset[tuple[str, str]] | None) -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget what was read (tests change the process environment between cases)."""
    _settings.cache_clear()
