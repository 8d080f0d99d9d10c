"""Sticky canary routing: which version of the served model answers a conversation.

The API replica turns each request into a conversation key and a number in [0, 1)
(:func:`bucket`); the model replica sends the conversation to the canary when that number is
below the canary's share (:meth:`LiveConfig.choose`).  The key is the ``X-Conversation-Id``
header, else the OpenAI ``user`` field, else the API key's name with the conversation's first
user message, so every turn of one conversation gets the same number and the same version, and
raising the share only moves conversations from production to the canary, never back.

:class:`LiveConfig` is what :func:`medgo.flywheel.control.publish` puts in the ``MedGoModel``
deployment's ``user_config`` (under ``flywheel``), for Serve's ``reconfigure``.
"""

from __future__ import annotations

import hashlib

from pydantic import Field, model_validator

from medgo.config import Section

CONVERSATION_HEADER = "x-conversation-id"
VERSION_HEADER = "X-MedGo-Version"


class LiveVersion(Section):
    """One live version: its registry name and adapter (``None``: the bare base model)."""

    version: str = Field(min_length=1, max_length=128)
    adapter_dir: str | None = None
    adapter_hash: str | None = None


class LiveConfig(Section):
    """The versions a served model name routes to, and the canary's share of conversations."""

    model: str
    """The served model name (``served_model_name`` of the application)."""
    production: LiveVersion
    canary: LiveVersion | None = None
    canary_share: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _distinct(self) -> "LiveConfig":
        if self.canary is not None and self.canary.version == self.production.version:
            raise ValueError(f"{self.production.version} cannot be production and canary at once")
        return self

    def choose(self, bucket: float) -> LiveVersion:
        """The canary for conversations whose bucket is below its share, production for the rest."""
        return self.canary if self.canary is not None and bucket < self.canary_share else self.production

    def versions(self) -> list[LiveVersion]:
        return [self.production, *([self.canary] if self.canary else [])]


def live_config(live: dict, model: str) -> LiveConfig:
    """A :class:`LiveConfig` from :meth:`medgo.flywheel.registry.Registry.live`'s answer."""
    if live["production"] is None:
        raise ValueError(f"model {model!r} has no production version; run medgo flywheel init")

    def one(v: dict | None) -> LiveVersion | None:
        return LiveVersion(version=v["version"], adapter_dir=v["adapter_dir"], adapter_hash=v["adapter_hash"]) if v else None

    return LiveConfig(model=model, production=one(live["production"]), canary=one(live["canary"]), canary_share=live["canary_share"])


def conversation_key(header: str | None, user: str | None, key_name: str, first_message: str) -> str:
    """The sticky key of a conversation (see the module docstring for the order)."""
    if header:
        return f"conversation:{header}"
    if user:
        return f"user:{user}"
    return f"key:{key_name}\0{first_message}"


def bucket(key: str) -> float:
    """A uniform number in [0, 1) from the key (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def first_user_message(messages: list[dict] | None, prompt: str | None) -> str:
    """A chat's first user message, or a text completion's prompt."""
    if messages is None:
        return prompt or ""
    return next((m["content"] for m in messages if m["role"] == "user"), "")


def request_bucket(headers, user: str | None, key_name: str, messages: list[dict] | None = None, prompt: str | None = None) -> float:
    """The bucket of one HTTP request (what the API replica passes to the model as ``bucket``)."""
    return bucket(conversation_key(headers.get(CONVERSATION_HEADER), user, key_name, first_user_message(messages, prompt)))
