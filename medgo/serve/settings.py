"""Settings of the MedGo Serve application: the ``args:`` of its entry in a Serve config file.

``serve run serve_configs/local.yaml`` hands the ``args`` mapping to
:func:`medgo.serve.app.build_app`, which validates it into :class:`ServeSettings` before any
replica starts; an unknown or mistyped key is a :class:`~medgo.config.ConfigError` naming it.
Replica counts, autoscaling and queue limits are Serve's own ``deployments:`` options.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from medgo.config import ModelConfig, Section

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


class ServeSettings(Section):
    """What one MedGo application serves and how its API behaves."""

    model: ModelConfig = ModelConfig()
    """Base model (``tiny`` or a local HF directory); its ``adapter``, if any, is merged in."""
    served_model_name: str = "medgo-tiny"
    """Name of the base model in ``/v1/models`` and in the requests' ``model`` field."""
    adapters: dict[str, str] = {}
    """LoRA adapters chosen per request by ``model``: served name -> PEFT adapter directory."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: the replica's GPU when it has one, else the CPU."""
    device_map: Literal["auto"] | None = None
    """``auto`` spreads a model too large for one GPU over all GPUs of the replica."""
    max_batch_size: int = Field(16, gt=0)
    """Most sequences decoded together in one forward pass of a replica."""
    batch_wait_ms: float = Field(0.0, ge=0)
    """How long an idle replica waits for company before its first prefill (later requests join between steps anyway)."""
    stream_interval_ms: float = Field(50.0, ge=0)
    """A stream sends the text gathered over this long as one chunk (Ray Serve LLM's default; 0: every token)."""
    model_transport: Literal["grpc", "ray"] = "grpc"
    """How the API replica reaches the model replicas: Serve's gRPC between replicas (cheaper per streamed chunk; between nodes it needs their ephemeral ports open) or Ray object references."""
    max_tokens_limit: int = Field(512, gt=0)
    """Largest ``max_tokens`` a request may ask for."""
    default_max_tokens: int = Field(128, gt=0)
    """``max_tokens`` of a request that does not set it (capped by the context length)."""
    database_url: str = "sqlite:///runs/serve/feedback.db"
    """SQLAlchemy URL of the completion and feedback store (PostgreSQL: ``postgresql+psycopg2://...``)."""
    database_url_env: str | None = "MEDGO_DATABASE_URL"
    """Environment variable that, when set on the replica, overrides ``database_url`` (keeps passwords out of YAML)."""
    api_keys_env: str | None = "MEDGO_API_KEYS"
    """Environment variable holding accepted API keys, separated by commas or whitespace (named env-1... with every scope)."""
    api_key_file: str | None = None
    """Key file: one key a line as ``NAME SCOPES sha256:HASH`` (``medgo serve keys add``); ``#`` comments allowed."""
    max_body_bytes: int = Field(1_000_000, gt=0)
    """Largest request body accepted; larger ones get 413."""
    request_timeout_s: float = Field(300.0, gt=0)
    """A non-streaming completion that takes longer is cancelled and answered 504."""
    retry_after_s: int = Field(1, ge=0)
    """``Retry-After`` seconds sent with a 503 when the model replicas' queues are full."""
    flywheel_metrics_interval_s: float = Field(30.0, ge=0)
    """How often the API replica exports each live flywheel version's acceptance rate as a Ray metric (0: never)."""
    debug_step_delay_s: float = Field(0.0, ge=0)
    """Testing only: sleep this long before every forward pass, to hold replicas busy."""

    @field_validator("served_model_name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"model name {value!r} must match {NAME.pattern}")
        return value

    @field_validator("adapters")
    @classmethod
    def _adapters_ok(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not NAME.match(name):
                raise ValueError(f"adapter name {name!r} must match {NAME.pattern}")
            if not str(path).strip():
                raise ValueError(f"adapter {name!r} has an empty directory")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ServeSettings":
        if self.served_model_name in self.adapters:
            raise ValueError(f"adapter name {self.served_model_name!r} clashes with served_model_name")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) exceeds max_tokens_limit ({self.max_tokens_limit})")
        return self

    def resolved_database_url(self) -> str:
        """``$database_url_env`` when set in this process's environment, else ``database_url``."""
        return (self.database_url_env and os.environ.get(self.database_url_env)) or self.database_url

    def model_names(self) -> list[str]:
        """Every name a request may put in ``model``: the base first, then the adapters."""
        return [self.served_model_name, *self.adapters]
