"""Fixtures for the serving tests: a tiny LoRA adapter, API keys, Serve on a test port, stores.

Servers are package-scoped: they stop when the last serving test is done, freeing the shared
Ray's CPUs for the rest of the suite.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

SERVE_PORT = 18080
API_KEY = "medgo-test-key-0123456789"
SERVE_RUN_KEY = "serve-run-test-key"
# `serve run CONFIG` (Serve's own CLI code) on a fresh local Ray started without the dashboard,
# which would cost a 2-core machine half a dozen extra processes.
SERVE_RUN = (
    "import sys, ray; from ray.serve.scripts import cli; "
    "ray.init(address='local', include_dashboard=False, num_cpus=2); "
    "cli.main(args=['run', sys.argv[1]], prog_name='serve')"
)


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory, tokenizer) -> Path:
    """A LoRA adapter on the tiny model with random (non-zero) weights, made with plain PEFT."""
    from peft import LoraConfig, get_peft_model

    from medgo.config import ModelConfig
    from medgo.model import load_model

    model = load_model(ModelConfig(), tokenizer)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapters") / "cardio"
    lora.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


SCOPED_KEYS = {"chat": "chat-key-0123", "feedback": "feedback-key-0123", "review": "review-key-0123", "admin": "admin-key-0123"}
"""One key per scope, named after it (``chat-only``...), in the test key file beside the all-scope ``test-all``."""
DOCTOR_KEYS = {"dr-chat": ("chat,feedback", "dr-chat-key-0123"), "dr-review": ("feedback,review", "dr-review-key-0123")}
"""Keys of two doctors using the workbench: name -> (scopes, key)."""


@pytest.fixture(scope="session")
def key_file(tmp_path_factory) -> Path:
    """The test key file: names, scopes and SHA-256 hashes (never the keys)."""
    from medgo.serve.security import SCOPES, hash_key

    path = tmp_path_factory.mktemp("secrets") / "api_keys"
    lines = [f"test-all {','.join(SCOPES)} {hash_key(API_KEY)}  # every scope"]
    lines += [f"{scope}-only {scope} {hash_key(key)}" for scope, key in SCOPED_KEYS.items()]
    lines += [f"{name} {scopes} {hash_key(key)}" for name, (scopes, key) in DOCTOR_KEYS.items()]
    path.write_text("# MedGo test keys\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def free_port(start: int) -> int:
    """The first port from ``start`` up that nothing listens on."""
    import socket

    for port in range(start, start + 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + 199}")


@pytest.fixture(scope="package")
def serve_url(ray_session):
    """Ray Serve on the shared test Ray, HTTP on a test port (18080 or the next free one, not 8000)."""
    from ray import serve

    port = free_port(SERVE_PORT)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh database per test: a SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedback.db'}"
        return
    url = os.environ.get("MEDGO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MEDGO_TEST_POSTGRES_URL not set (.ci/run starts a PostgreSQL server and sets it)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"medgo_test_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _apps(tiny_adapter, key_file, tmp) -> dict:
    """The test applications by name; each application's SQLite file is ``<tmp>/<name>.db``."""
    from medgo.serve.app import compose
    from medgo.serve.settings import ServeSettings

    small = {"ray_actor_options": {"num_cpus": 0.1}}
    common = dict(database_url_env=None, max_tokens_limit=64, default_max_tokens=16)
    main = ServeSettings(adapters={"cardio": str(tiny_adapter)}, api_key_file=str(key_file), api_keys_env=None, database_url=f"sqlite:///{tmp / 'main.db'}", **common)
    # Every forward pass sleeps: an 8-token answer holds the busy replica for ~2 s.
    busy = ServeSettings(database_url=f"sqlite:///{tmp / 'busy.db'}", api_keys_env=None, max_batch_size=1, debug_step_delay_s=0.25, **common)
    # The scaling app reaches its model replicas through Ray object references (the other apps: gRPC).
    scaling = ServeSettings(database_url=f"sqlite:///{tmp / 'scaling.db'}", api_keys_env=None, max_batch_size=4, debug_step_delay_s=0.05,
                            model_transport="ray", **common)  # fmt: skip
    one = {"autoscaling_config": None, "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}}
    autoscaling = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1, "upscale_delay_s": 1, "downscale_delay_s": 3,
                   "metrics_interval_s": 0.5, "look_back_period_s": 2}
    return {
        "main": compose(main, model_options=one, api_options=small),
        "busy": compose(busy, model_options={**one, "max_ongoing_requests": 1, "max_queued_requests": 1,
                                             "backpressure_config": {"status_code": 503, "retry_after_s": 2}}, api_options=small),
        "scaling": compose(scaling, model_options={"autoscaling_config": autoscaling, "max_ongoing_requests": 4, "ray_actor_options": {"num_cpus": 0.25}},
                           api_options=small),
    }


@pytest.fixture(scope="package")
def serve_apps(serve_url, tiny_adapter, key_file, tmp_path_factory):
    """Deploy every test application at once (replicas start in parallel); each at /<name>."""
    from ray import serve
    from ray.serve.api import RunTarget

    dbs = tmp_path_factory.mktemp("serve-dbs")
    apps = _apps(tiny_adapter, key_file, dbs)
    serve.run_many([RunTarget(app, name=name, route_prefix=f"/{name}") for name, app in apps.items()], wait_for_applications_running=False)
    return SimpleNamespace(url=serve_url, dbs=dbs)


def wait_running(name: str, timeout: float = 240) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app = serve.status().applications.get(name)
        if app is not None and app.status == "RUNNING":
            return
        if app is not None and app.status == "DEPLOY_FAILED":
            pytest.fail(f"application {name} failed to deploy: {app.message}")
        time.sleep(0.5)
    pytest.fail(f"application {name} not running after {timeout}s")


@pytest.fixture(scope="package")
def main_app(serve_apps):
    """The MedGo app at /main: tiny model + 'cardio' adapter, API keys from a file, a SQLite store."""
    wait_running("main")
    return SimpleNamespace(url=f"{serve_apps.url}/main", db=f"sqlite:///{serve_apps.dbs / 'main.db'}", headers={"Authorization": f"Bearer {API_KEY}"})


@pytest.fixture(scope="package")
def busy_app(serve_apps):
    """At /busy: one replica, one request at a time, one queued; every forward pass sleeps 0.25 s."""
    wait_running("busy")
    return f"{serve_apps.url}/busy"


@pytest.fixture(scope="package")
def scaling_app(serve_apps):
    """At /scaling: autoscaling 1..2 replicas with target 1 ongoing request and short delays; ``model_transport: ray``."""
    wait_running("scaling")
    return f"{serve_apps.url}/scaling"


@pytest.fixture(scope="package")
def flywheel_deployed(serve_url, key_file, tmp_path_factory):
    """The MedGo app at /flywheel deployed from a config, as ``serve run``/``serve deploy`` do, so the
    flywheel can update it in place; its SQLite store is also the registry.  Does not wait."""
    from ray import serve
    from ray.serve.context import _connect
    from ray.serve.schema import ServeDeploySchema

    db = f"sqlite:///{tmp_path_factory.mktemp('flywheel') / 'flywheel.db'}"
    args = dict(model={"base_model": "tiny"}, database_url=db, database_url_env=None, api_keys_env=None, api_key_file=str(key_file),
                max_tokens_limit=64, default_max_tokens=16, flywheel_metrics_interval_s=0)
    model = {"name": "MedGoModel", "autoscaling_config": {"min_replicas": 1, "max_replicas": 1}, "ray_actor_options": {"num_cpus": 0.25}}
    app = {"name": "flywheel", "route_prefix": "/flywheel", "import_path": "medgo.serve.app:build_app", "args": args,
           "deployments": [model, {"name": "MedGoAPI", "ray_actor_options": {"num_cpus": 0.1}}]}
    _connect().deploy_apps(ServeDeploySchema(applications=[app]))
    yield SimpleNamespace(url=f"{serve_url}/flywheel", db=db, app="flywheel", headers={"Authorization": f"Bearer {API_KEY}"})
    serve.delete("flywheel")


@pytest.fixture(scope="package")
def flywheel_app(flywheel_deployed):
    wait_running("flywheel")
    return flywheel_deployed


@pytest.fixture(scope="package")
def serve_run_process(tmp_path_factory):
    """``serve run`` of serve_configs/local.yaml (test port, temp database, an API key) on its own
    local Ray, as a subprocess; yields (url, config path, process, log path, key) without waiting."""
    import signal
    import subprocess
    import sys

    import yaml

    from medgo.config import REPO_ROOT

    tmp = tmp_path_factory.mktemp("serve-run")
    config = yaml.safe_load((REPO_ROOT / "serve_configs" / "local.yaml").read_text(encoding="utf-8"))
    port = free_port(SERVE_PORT + 200)
    config["http_options"]["port"] = port
    config["applications"][0]["args"].update(database_url=f"sqlite:///{tmp / 'feedback.db'}", api_keys_env="MEDGO_SERVE_RUN_KEYS")
    path = tmp / "local.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {"RAY_ADDRESS", "MEDGO_DATABASE_URL"}}
    env["MEDGO_SERVE_RUN_KEYS"] = SERVE_RUN_KEY
    log = tmp / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", SERVE_RUN, str(path)], cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", config=path, proc=proc, log=log, key=SERVE_RUN_KEY)
    finally:
        if proc.poll() is None:  # it may have exited already (its log then says why)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="package", autouse=True)
def _boot_servers_early(request):
    """Start the Serve test apps and the ``serve run`` subprocess (when some selected test needs
    them) with the first serving test, so they boot while the in-process tests run."""
    needed = set().union(*(item.fixturenames for item in request.session.items if "serve" in item.path.parts))
    if needed & {"main_app", "busy_app", "scaling_app"}:
        request.getfixturevalue("serve_apps")
    if "flywheel_app" in needed:
        request.getfixturevalue("flywheel_deployed")
    if "serve_run_process" in needed or any(item.path.name == "test_serve_run.py" for item in request.session.items):
        request.getfixturevalue("serve_run_process")
