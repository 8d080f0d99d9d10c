"""Live flywheel versions inside one model replica: load new adapters, retire old ones, in place.

:meth:`LiveAdapters.apply` runs on the engine thread between two forward passes (through
:meth:`medgo.serve.engine.Engine.call`), so no batch ever sees a half-loaded adapter.  A retired
adapter stays loaded while any running or queued request still uses it and is deleted at a later
:meth:`apply` (each ``reconfigure``); requests keep the adapter they started with.
"""

from __future__ import annotations

import itertools
import logging

import torch
from peft import PeftModel

from medgo.flywheel.routing import LiveConfig, LiveVersion
from medgo.serve.engine import Engine, Sequence

logger = logging.getLogger("ray.serve")


class LiveAdapters:
    """Which PEFT adapter serves each live version; the replica's :class:`LiveConfig`."""

    def __init__(self):
        self.config: LiveConfig | None = None
        self.loaded: dict[str, str] = {}
        """version -> internal PEFT adapter name, for every flywheel adapter loaded now."""
        self._names = (f"flywheel{i}" for i in itertools.count())

    def resolve(self, bucket: float) -> tuple[LiveVersion, str | None] | None:
        """(version, internal adapter name or None for the bare base) for a conversation; None before the first publish."""
        config = self.config
        if config is None:
            return None
        chosen = config.choose(bucket)
        return chosen, self.loaded.get(chosen.version) if chosen.adapter_dir else None

    def apply(self, engine: Engine, config: LiveConfig) -> None:
        """Load the adapters of ``config`` that are missing, switch to it, delete unused retired adapters (engine thread)."""
        from medgo.serve.model import attach_adapters  # medgo.serve.model imports this module

        with torch.inference_mode(False):
            for v in config.versions():
                if v.adapter_dir and v.version not in self.loaded:
                    name = next(self._names)
                    engine.model = attach_adapters(engine.model, {name: v.adapter_dir}, {v.version: v.adapter_dir})
                    engine.model.eval()
                    engine.uses_adapters = True
                    self.loaded[v.version] = name
        self.config = config
        self.collect(engine)
        logger.info("flywheel: production=%s canary=%s share=%.2f loaded=%s", config.production.version,
                    config.canary.version if config.canary else None, config.canary_share, sorted(self.loaded))

    def collect(self, engine: Engine) -> list[str]:
        """Delete retired adapters no request uses (engine thread); the versions deleted."""
        live = {v.version for v in self.config.versions()} if self.config else set()
        in_use = {s.request.adapter for s in [*engine.rows, *list(engine.pending.queue)] if isinstance(s, Sequence)}
        gone = [v for v, name in self.loaded.items() if v not in live and name not in in_use]
        for version in gone:
            if isinstance(engine.model, PeftModel) and len(engine.model.peft_config) > 1:  # PEFT keeps at least one adapter
                engine.model.delete_adapter(self.loaded.pop(version))
        return [v for v in gone if v not in self.loaded]
