"""Acting on the registry: publish the live versions to the running Serve app, promote, roll back,
change the canary's share, and the auto-rollback check.

:func:`publish` updates the ``MedGoModel`` deployment's ``user_config`` in place, as ``serve deploy``
with an edited config would: the application's deployed config (from the Serve controller) is
re-applied with only that ``user_config`` changed, so Serve calls ``reconfigure`` on the running
replicas instead of replacing them, and no request in flight is dropped.  This needs an
application deployed from a config (``serve run``/``serve deploy CONFIG``, ``medgo serve``); one
deployed from Python (``serve.run(app)``) is refused with a message saying so::

    reg = Registry(url)
    promote(reg, "medgo-tiny-r0003", actor="dr-wang", reason="acceptance 82% vs 74%")   # registry + audit
    publish(reg, "medgo-tiny", app="medgo", address="auto")                              # the running app
"""

from __future__ import annotations

import logging
import threading
import time

from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError

from medgo.config import Section
from medgo.flywheel.registry import Registry, RegistryError
from medgo.flywheel.routing import LiveConfig, live_config
from medgo.flywheel.stats import AcceptanceGauge, AutoRollbackConfig, acceptance, rollback_verdict

AUTO_ACTOR = "auto-rollback"
logger = logging.getLogger("ray.serve")


class ControlConfig(Section):
    """Where the running application is and the rules acting on it (``control:`` of a flywheel config)."""

    app: str = "medgo"
    """The Serve application's name (``applications[].name`` of the Serve config)."""
    deployment: str = "MedGoModel"
    """Its model deployment, whose ``user_config`` carries the live versions."""
    ray_address: str | None = None
    """Ray cluster of the application (``auto``: the local one; None: ``$RAY_ADDRESS`` or ``auto``)."""
    publish: bool = True
    """Push every change to the running application (off: registry only, e.g. no Serve running)."""
    publish_timeout_s: float = Field(180.0, gt=0)
    """How long to wait for the replicas to report the new versions."""
    canary_share: float = Field(0.1, ge=0, le=1)
    """Share of conversations a new canary serves."""
    auto_rollback: AutoRollbackConfig = AutoRollbackConfig()


class PublishError(RuntimeError):
    """The running application could not be updated (not found, deployed from Python, timed out)."""


def serve_client(address: str | None = None):
    """The Serve controller client, connecting this process to Ray first when needed."""
    import ray
    from ray.serve.context import _connect

    if not ray.is_initialized():
        ray.init(address=address or "auto", log_to_driver=False, configure_logging=False)
    return _connect()


def publish(registry: Registry, model: str, *, app: str = "medgo", deployment: str = "MedGoModel", address: str | None = None, timeout_s: float = 180.0) -> LiveConfig:
    """Push ``model``'s live versions (production and canary adapter directories, version names,
    canary share; :meth:`Registry.live`) into the ``user_config`` of ``deployment`` of the running
    Serve application ``app`` on the Ray cluster at ``address``; wait up to ``timeout_s`` until its
    replicas serve them.  Returns the :class:`LiveConfig` sent."""
    from ray.serve.schema import ServeDeploySchema

    live = live_config(registry.live(model), model)
    client = serve_client(address)
    details = client.get_serve_details()
    apps = {name: a.get("deployed_app_config") for name, a in details.get("applications", {}).items()}
    if app not in apps:
        raise PublishError(f"no Serve application {app!r} is running (running: {', '.join(apps) or 'none'})")
    if apps[app] is None:
        raise PublishError(f"application {app!r} was deployed from Python (serve.run); deploy it from a config (medgo serve, serve run/deploy CONFIG) to update it in place")
    configs = [_with_user_config(cfg, deployment, {"flywheel": live.model_dump(mode="json")}) if name == app else cfg for name, cfg in apps.items() if cfg is not None]
    client.deploy_apps(ServeDeploySchema(applications=configs, target_capacity=details.get("target_capacity")))
    wait_serving(app, deployment, live, timeout_s)
    return live


def _with_user_config(app_config: dict, deployment: str, user_config: dict) -> dict:
    deployments = [dict(d) for d in app_config.get("deployments") or []]
    entry = next((d for d in deployments if d.get("name") == deployment), None)
    if entry is None:
        entry = {"name": deployment}
        deployments.append(entry)
    entry["user_config"] = user_config
    return {**app_config, "deployments": deployments}


def wait_serving(app: str, deployment: str, live: LiveConfig, timeout_s: float) -> None:
    """Until the deployment is healthy and a replica reports ``live`` (raises :class:`PublishError` after ``timeout_s``)."""
    from ray import serve

    handle, want, deadline = serve.get_deployment_handle(deployment, app), live.model_dump(mode="json"), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        healthy = status is not None and status.deployments.get(deployment) is not None and status.deployments[deployment].status == "HEALTHY"
        if healthy and handle.info.remote().result(timeout_s=timeout_s).get("flywheel") == want:
            return
        time.sleep(0.5)
    raise PublishError(f"{app}/{deployment} did not report the new versions within {timeout_s:.0f}s; see serve status")


def promote(registry: Registry, version: str, *, actor: str, reason: str, source: str = "medgo flywheel promote") -> dict:
    """Make a canary (or a retired version) production; the old production is retired.  Audited."""
    row = registry.get(version)
    if row is None or row["status"] not in ("canary", "retired"):
        raise RegistryError(f"only a canary or a retired version can be promoted; {version} is {row['status'] if row else 'not registered'}")
    return registry.set_status(version, "production", actor=actor, reason=reason, source=source)


def set_share(registry: Registry, model: str, share: float, *, actor: str, reason: str, source: str = "medgo flywheel share") -> dict:
    """Change the share of conversations the canary of ``model`` serves.  Audited."""
    canary = registry.live(model)["canary"]
    if canary is None:
        raise RegistryError(f"{model} has no canary")
    return registry.set_status(canary["version"], "canary", actor=actor, reason=reason, source=source, canary_share=share)


def live_acceptance(registry: Registry, model: str) -> dict:
    """``{"production": Acceptance | None, "canary": Acceptance | None}`` of ``model``'s live versions."""
    live = registry.live(model)
    names = [v["version"] for v in (live["production"], live["canary"]) if v]
    stats = acceptance(registry.engine, names)
    return {role: stats[live[role]["version"]] if live[role] else None for role in ("production", "canary")}


def check(registry: Registry, model: str, rule: AutoRollbackConfig, *, actor: str = AUTO_ACTOR, source: str = "medgo flywheel check") -> dict:
    """The auto-rollback rule: roll back ``model``'s canary when its acceptance is significantly below
    production's.  Returns ``{"rolled_back": version | None, "why": str}``; the caller publishes."""
    stats = live_acceptance(registry, model)
    if stats["canary"] is None or stats["production"] is None:
        return {"rolled_back": None, "why": "no canary"}
    fire, why = rollback_verdict(stats["canary"], stats["production"], rule)
    if fire:
        registry.rollback(stats["canary"].version, actor=actor, reason=f"auto-rollback: {why}", source=source)
    return {"rolled_back": stats["canary"].version if fire else None, "why": why}


def export_acceptance(registry: Registry, model: str, gauge: AcceptanceGauge) -> dict[str, float]:
    """Set the acceptance gauge of ``model``'s live versions; the values set."""
    live, stats = registry.live(model), live_acceptance(registry, model)
    status = {live[r]["version"]: r for r in ("production", "canary") if live[r]}
    return gauge.set(model, {a.version: a for a in stats.values() if a}, status)


def start_acceptance_exporter(database_url: str, model: str, interval_s: float) -> threading.Thread:
    """A daemon thread exporting :func:`export_acceptance` every ``interval_s`` (run in the API replica)."""
    def loop() -> None:
        registry, gauge = Registry(database_url), AcceptanceGauge()
        while True:
            try:
                export_acceptance(registry, model, gauge)
            except SQLAlchemyError as exc:
                logger.warning("flywheel metrics: %s", type(exc).__name__)
            time.sleep(interval_s)

    thread = threading.Thread(target=loop, name="medgo-flywheel-metrics", daemon=True)
    thread.start()
    return thread
