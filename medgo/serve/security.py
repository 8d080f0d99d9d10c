"""API keys and request size limits, as one ASGI middleware in front of the whole API.

Keys come from an environment variable (comma- or whitespace-separated) and/or a secret file
(one key per line, ``#`` comments).  When any key is configured, every route except
``/healthz`` needs ``Authorization: Bearer <key>``; otherwise the API is open (and says so in
the replica log).  Bodies larger than the limit are refused with 413 before any route sees them.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from medgo.serve.protocol import error_response

OPEN_PATHS = frozenset({"/healthz"})


def load_api_keys(env_var: str | None, key_file: str | None) -> frozenset[str]:
    """Accepted keys from ``$env_var`` and ``key_file``; a named file that is missing is an error."""
    keys: set[str] = set()
    if env_var and os.environ.get(env_var):
        keys.update(os.environ[env_var].replace(",", " ").split())
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise FileNotFoundError(f"api_key_file not found: {key_file}")
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.add(line)
    return frozenset(keys)


def key_is_valid(header: str | None, keys: frozenset[str]) -> bool:
    """Constant-time check of an ``Authorization: Bearer <key>`` header against every key."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return False
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


class Guard:
    """ASGI middleware: API key check, then body size limit (the body is read once and replayed)."""

    def __init__(self, app, keys: frozenset[str], max_body_bytes: int):
        self.app, self.keys, self.max_body_bytes = app, keys, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        if self.keys and path not in OPEN_PATHS:
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"").decode("latin-1")
            if not key_is_valid(auth, self.keys):
                response = error_response(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        body, too_large = await self._read_body(scope, receive)
        if too_large:
            response = error_response(413, f"request body exceeds {self.max_body_bytes} bytes", code="body_too_large")
            return await response(scope, receive, send)
        return await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope, receive) -> tuple[bytes, bool]:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return b"", True
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), False


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, for streaming responses

    return replay
