"""Serving on Ray Serve: an OpenAI-compatible chat API with streaming, continuous batching,
per-request LoRA adapters, scoped API keys, Prometheus metrics, a durable doctor-feedback store
with an audit table, de-identified review and export, and retention.

Run the embedded tiny model on a laptop (API at http://127.0.0.1:8000/v1)::

    serve run serve_configs/local.yaml          # or: medgo serve
    python -c "from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='x'); \\
               print(c.chat.completions.create(model='medgo-tiny', messages=[{'role': 'user', 'content': '头痛怎么办？'}]))"
    curl -X POST http://127.0.0.1:8000/v1/feedback -H 'Content-Type: application/json' \\
         -d '{"response_id": "chatcmpl-...", "verdict": "acceptable"}'    # reviewer: the key's name
    medgo serve export --output runs/serve/feedback.jsonl     # de-identified, for the preference (DPO) stage
    medgo serve keys --key-file /etc/medgo/api_keys add dr-wang --scopes feedback,review
    medgo serve purge --older-than 90d                        # retention (or --mode deidentify)

On a cluster: ``serve deploy serve_configs/qwen2_72b.yaml``.  A cluster started with
``ray start --head`` uses token authentication: ``serve deploy``/``ray job submit`` then need
``RAY_AUTH_MODE=token`` and the token in ``~/.ray/auth_token``.

Modules: ``settings`` (the application's args), ``engine`` (continuous batcher), ``model``
(the model deployment), ``api`` (FastAPI routes), ``protocol`` (OpenAI wire format),
``store`` (SQLAlchemy feedback store, JSONL export, purge, audit), ``security`` (scoped keys, body limit),
``metrics``, ``app`` (Serve deployments and builder), ``cli`` (``medgo serve``).
"""
