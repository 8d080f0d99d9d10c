"""The Serve application: a FastAPI ingress deployment in front of an autoscaling model deployment.

    serve run serve_configs/local.yaml                 # embedded tiny model on the CPU
    serve deploy serve_configs/qwen2_72b.yaml          # a cluster (RAY_ADDRESS / --address)

The config's ``import_path`` is ``medgo.serve.app:build_app`` and its ``args`` are
:class:`~medgo.serve.settings.ServeSettings`.  Deployment options in the code below are
defaults; a config's ``deployments:`` entries (``MedGoAPI``, ``MedGoModel``) override them.
"""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from medgo.config import build_config
from medgo.flywheel.control import start_acceptance_exporter
from medgo.serve.api import HandleBackend, build_api
from medgo.serve.model import ModelRunner
from medgo.serve.settings import ServeSettings
from medgo.serve.store import FeedbackStore

API_DEFAULTS = dict(
    name="MedGoAPI",
    num_replicas=1,
    max_ongoing_requests=512,
    ray_actor_options={"num_cpus": 0.25},
)
MODEL_DEFAULTS = dict(
    name="MedGoModel",
    max_ongoing_requests=32,
    max_queued_requests=64,
    backpressure_config={"status_code": 503, "retry_after_s": 1},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=10,
    health_check_timeout_s=60,
    graceful_shutdown_timeout_s=60,
)


class APIServer:
    """The ingress replica: owns the feedback store connection and builds the FastAPI app."""

    def __init__(self, model, settings: dict):
        self.settings = ServeSettings.model_validate(settings)
        self.store = FeedbackStore(self.settings.resolved_database_url())
        self.backend = HandleBackend(model, self.settings.model_transport)
        if self.settings.flywheel_metrics_interval_s:
            start_acceptance_exporter(self.settings.resolved_database_url(), self.settings.served_model_name, self.settings.flywheel_metrics_interval_s)

    def __serve_build_asgi_app__(self):
        return build_api(self.backend, self.settings, self.store)


def compose(settings: ServeSettings, model_options: dict | None = None, api_options: dict | None = None) -> Application:
    """Bind both deployments; ``*_options`` override the defaults (tests use small ones)."""
    model = serve.deployment(ModelRunner, **{**MODEL_DEFAULTS, **(model_options or {})})
    api = serve.deployment(serve.ingress()(APIServer), **{**API_DEFAULTS, **(api_options or {})})
    args = settings.model_dump(mode="json")
    return api.bind(model.bind(args), args)


def build_app(args: dict) -> Application:
    """Serve's application builder: validates ``args`` (errors name the key) and binds the app."""
    return compose(build_config(ServeSettings, args, "application args"))
