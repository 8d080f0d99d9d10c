"""The model side of serving: base model, LoRA adapters, tokenization and the batching engine.

:class:`ModelRunner` is a plain class; :mod:`medgo.serve.app` deploys it as the ``MedGoModel``
Serve deployment, and tests or benchmarks use it directly.  Requests arrive as plain dicts
from the API replica::

    runner = ModelRunner({"model": {"base_model": "tiny"}})
    await runner.complete({"kind": "chat", "model": "medgo-tiny", "messages": [...], "max_tokens": 32})

Invalid requests come back as ``{"error": {...}}`` values (not exceptions), so user mistakes
never show up as replica failures in the logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import torch
from peft import PeftModel

from medgo import console
from medgo.config import ModelConfig
from medgo.flywheel.adapters import LiveAdapters
from medgo.flywheel.routing import LiveConfig, LiveVersion
from medgo.model.loading import ModelLoadError, is_tiny, load_model_and_tokenizer, model_config_for, resolve_attn_implementation, resolve_dtype, resolve_tokenizer_path
from medgo.model.tokenizer import load_tokenizer, tokenizer_fingerprint
from medgo.serve.engine import Delta, Engine, Failure, Finish, GenerationRequest
from medgo.serve.settings import ServeSettings

logger = logging.getLogger("ray.serve")
HEALTH_STALL_S = 120.0


class RequestError(Exception):
    """A request this model cannot serve, with the HTTP status and OpenAI error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(status, message, param, code)
        self.status, self.message, self.param, self.code = status, message, param, code

    def as_dict(self) -> dict:
        return {"error": {"status": self.status, "message": self.message, "param": self.param, "code": self.code}}


class ModelRunner:
    """One model replica: the base model, its adapters and a continuous-batching :class:`Engine`."""

    def __init__(self, settings: dict | ServeSettings):
        console.quiet_library_warnings()
        s = settings if isinstance(settings, ServeSettings) else ServeSettings.model_validate(settings)
        self.settings = s
        device = "cuda" if s.device == "cuda" or (s.device == "auto" and torch.cuda.is_available()) else "cpu"
        model, self.tokenizer = load_base(s.model, device, s.device_map)
        self.adapters = {name: f"adapter{i}" for i, name in enumerate(s.adapters)}
        model = attach_adapters(model, {self.adapters[n]: p for n, p in s.adapters.items()}, s.adapters)
        model.eval()
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.versions = {s.served_model_name: base_version(s.model, self.tokenizer)}
        self.versions.update({n: adapter_version(p) for n, p in s.adapters.items()})
        self.engine = Engine(model, self.tokenizer, s.max_batch_size, s.batch_wait_ms / 1000, s.debug_step_delay_s)
        self.flywheel = LiveAdapters()
        logger.info("model ready: %s on %s, adapters=%s, context=%d", s.served_model_name, device, list(s.adapters), self.context_length)

    async def info(self) -> dict:
        """Served names, their versions, the context length and the forward passes run so far."""
        live = self.flywheel.config
        return {"base": self.settings.served_model_name, "adapters": list(self.adapters), "versions": self.versions,
                "context_length": self.context_length, "engine_steps": self.engine.steps,
                "flywheel": live.model_dump() if live else None, "flywheel_loaded": sorted(self.flywheel.loaded)}

    async def reconfigure(self, user_config: dict) -> None:
        """Serve's in-place update (``user_config``): ``{"flywheel": LiveConfig}`` from :func:`medgo.flywheel.control.publish`.

        New adapters load between two forward passes; requests in flight keep theirs.
        """
        if not (user_config or {}).get("flywheel"):
            return
        live = LiveConfig.model_validate(user_config["flywheel"])
        if live.model != self.settings.served_model_name:
            raise ValueError(f"flywheel config is for {live.model!r}, this replica serves {self.settings.served_model_name!r}")
        await asyncio.wrap_future(self.engine.call(lambda: self.flywheel.apply(self.engine, live)))

    async def complete(self, params: dict) -> dict:
        """Whole answer: ``{text, finish_reason, prompt_tokens, completion_tokens, ...}`` or ``{error}``."""
        route = self.route(params)
        try:
            request = self.encode(params, stream=False, route=route)
        except RequestError as err:
            return err.as_dict()
        async with aclosing(self.engine.generate(request)) as events:
            async for event in events:
                if isinstance(event, Finish):
                    return {**self._head(request, params, route), **_finish(event), "text": event.text}
                if isinstance(event, Failure):
                    return self._failure(event)
        return RequestError(500, "generation ended without a result").as_dict()

    async def stream(self, params: dict) -> AsyncIterator[dict]:
        """A header ``{prompt_tokens, base_version, adapter_version}``, ``{delta}``..., ``{finish_reason, ...}`` (with the last ``delta``)."""
        route = self.route(params)
        try:
            request = self.encode(params, stream=True, route=route)
        except RequestError as err:
            yield err.as_dict()
            return
        yield self._head(request, params, route)
        interval, held, last_sent = self.settings.stream_interval_ms / 1000, "", float("-inf")
        async with aclosing(self.engine.generate(request)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    held += event.text
                    if time.monotonic() - last_sent >= interval:  # the first text goes out at once
                        yield {"delta": held}
                        held, last_sent = "", time.monotonic()
                    continue
                if isinstance(event, Finish):  # the last text travels with the end: one chunk less
                    yield {"delta": held, **_finish(event)} if held else _finish(event)
                    continue
                if held:
                    yield {"delta": held}
                    held = ""
                yield self._failure(event)

    def route(self, params: dict) -> tuple[LiveVersion, str | None] | None:
        """The flywheel version (and its adapter) answering a request for the served model name; None otherwise."""
        if params.get("model") != self.settings.served_model_name:
            return None
        return self.flywheel.resolve(params.get("bucket", 1.0))

    def _head(self, request: GenerationRequest, params: dict, route: tuple[LiveVersion, str | None] | None = None) -> dict:
        head = {"prompt_tokens": len(request.prompt_ids), "base_version": self.versions[self.settings.served_model_name]}
        if route is not None:
            return {**head, "version": route[0].version, "adapter_version": route[0].adapter_hash}
        return {**head, "adapter_version": self.versions[params["model"]] if request.adapter else None}

    @staticmethod
    def _failure(event: Failure) -> dict:
        logger.error("generation failed: %s", event.error)
        return RequestError(500, "the model failed while generating; retry the request", code="model_error").as_dict()

    def encode(self, params: dict, stream: bool = True, route: tuple[LiveVersion, str | None] | None = None) -> GenerationRequest:
        """Tokenize and check a request against this model (unknown model, context length); ``route``: see :meth:`route`."""
        name = params.get("model")
        if name not in self.versions:
            raise RequestError(404, f"model {name!r} does not exist; see GET /v1/models", "model", "model_not_found")
        if params["kind"] == "chat":
            ids = self.tokenizer.apply_chat_template(params["messages"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(params["prompt"], add_special_tokens=False)["input_ids"]
        max_tokens = params.get("max_tokens") or min(self.settings.default_max_tokens, max(1, self.context_length - len(ids)))
        if len(ids) + max_tokens > self.context_length:
            raise RequestError(
                400, f"this model's context length is {self.context_length} tokens; the prompt has {len(ids)} and max_tokens asks for {max_tokens}",
                "max_tokens" if len(ids) < self.context_length else ("messages" if params["kind"] == "chat" else "prompt"), "context_length_exceeded",
            )
        return GenerationRequest(
            prompt_ids=list(ids), max_tokens=max_tokens, temperature=params.get("temperature", 1.0), top_p=params.get("top_p", 1.0),
            seed=params.get("seed"), stop=tuple(params.get("stop") or ()), adapter=route[1] if route else self.adapters.get(name), ignore_eos=bool(params.get("ignore_eos")), stream=stream,
        )

    async def check_health(self) -> None:
        """Serve's health probe: the engine thread runs and the model really produces a token."""
        engine = self.engine
        if not engine.alive:
            raise RuntimeError("engine thread died")
        if engine.busy:
            if time.monotonic() - engine.last_step > HEALTH_STALL_S:
                raise RuntimeError(f"engine made no progress for {HEALTH_STALL_S:.0f}s")
            return
        if self.flywheel.retired():  # delete retired flywheel adapters no request uses any more
            await asyncio.wrap_future(engine.call(lambda: self.flywheel.collect(engine)))
        probe = GenerationRequest(prompt_ids=self.tokenizer("健康检查")["input_ids"] or [0], max_tokens=1, temperature=0)
        async with aclosing(engine.generate(probe)) as events:
            async for event in events:
                if isinstance(event, Failure):
                    raise RuntimeError(f"health probe failed: {event.error}")


def _finish(event: Finish) -> dict:
    return {"finish_reason": event.reason, "completion_tokens": event.completion_tokens, "ttft_s": event.first_token_s}


def load_base(cfg: ModelConfig, device: str, device_map: str | None):
    """The base model (its own adapter merged in) and tokenizer; ``device_map`` spreads it over GPUs."""
    if device_map is None or is_tiny(cfg):
        model, tokenizer = load_model_and_tokenizer(cfg, device)
    else:
        from transformers import AutoModelForCausalLM

        tokenizer = load_tokenizer(resolve_tokenizer_path(cfg))
        model_config_for(cfg, tokenizer)  # validates directory and vocabulary before loading weights
        model = AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype=resolve_dtype(cfg.dtype), attn_implementation=resolve_attn_implementation(cfg.attn_implementation), device_map=device_map)
        if cfg.adapter:
            model = PeftModel.from_pretrained(model, cfg.adapter)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    return model, tokenizer


def attach_adapters(model, internal: dict[str, str], served: dict[str, str]):
    """Load each PEFT adapter under its internal name; errors name the served adapter."""
    by_internal = dict(zip(internal, served, strict=True))
    for name, path in internal.items():
        if not Path(path, "adapter_config.json").is_file():
            raise ModelLoadError(f"adapter {by_internal[name]!r}: {path} is not a PEFT adapter directory (adapter_config.json missing)")
        try:
            if isinstance(model, PeftModel):
                model.load_adapter(path, adapter_name=name)
            else:
                model = PeftModel.from_pretrained(model, path, adapter_name=name)
        except Exception as exc:
            raise ModelLoadError(f"adapter {by_internal[name]!r} ({path}) does not fit the base model: {exc}") from exc
    return model


def base_version(cfg: ModelConfig, tokenizer) -> str:
    """A short stable id of the base weights: tiny spec + tokenizer, or config and weight files."""
    h = hashlib.sha256()
    if is_tiny(cfg):
        h.update(json.dumps(cfg.tiny.model_dump(), sort_keys=True).encode())
        h.update(tokenizer_fingerprint(tokenizer).encode())
        name = "tiny"
    else:
        root = Path(cfg.base_model)
        for p in sorted(root.iterdir()):
            if p.suffix in {".json", ".safetensors", ".bin"}:
                h.update(f"{p.name}:{p.stat().st_size}".encode())
        h.update((root / "config.json").read_bytes())
        name = root.name
    if cfg.adapter:
        h.update(adapter_version(cfg.adapter).encode())
    return f"{name}@{h.hexdigest()[:12]}"


def adapter_version(path: str) -> str:
    """A short content hash of a PEFT adapter directory's config and weights."""
    h = hashlib.sha256()
    for p in sorted(Path(path).glob("adapter_*")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return f"{Path(path).name}@{h.hexdigest()[:12]}"
