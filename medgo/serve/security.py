"""API keys with names and scopes, and request size limits, as one ASGI middleware in front of the API.

A key has a name and scopes:

``chat``      ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``
``feedback``  ``POST /v1/feedback`` (the judgement's reviewer is the key's name)
``review``    ``GET /v1/review/queue``: de-identified conversations that await judgement
``admin``     ``GET /v1/feedback/export``, ``POST /v1/admin/purge``, ``GET /v1/admin/audit``,
              ``GET /v1/versions/stats``

``GET /v1/me`` (the key's own name and scopes) needs any valid key; the workbench's page and
static files under ``/ui`` need none (the page asks for a key and sends it with each call).

Production keys live in a key file (``api_key_file``), one key a line: its name, its scopes
(comma-separated) and the SHA-256 of the key, never the key itself::

    # name     scopes            hash of the key (medgo serve keys add)
    frontend   chat              sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

``medgo serve keys add NAME --scopes chat,feedback`` writes such a line and prints the new key
once.  Keys in the ``api_keys_env`` variable (comma- or whitespace-separated) are named
``env-1``, ``env-2``... and have every scope (a warning says so).  With neither configured the
API is open (a loud warning); with a key file, even an empty one, it is not.

A request without a known key gets 401, one outside its key's scopes 403, a body over the
limit 413.  The key (its name and scopes) is put in the request's ``state.api_key``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from medgo.serve.protocol import error_response

logger = logging.getLogger("ray.serve")
SCOPES = ("chat", "feedback", "review", "admin")
OPEN_PATHS = frozenset({"/healthz"})
OPEN_PREFIX = "/ui/"
"""The workbench's page and static files (:mod:`medgo.serve.ui`): no key, no API data."""
ROUTE_SCOPES = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "chat",
    "/v1/models": "chat",
    "/v1/feedback": "feedback",
    "/v1/review/queue": "review",
    "/v1/feedback/export": "admin",
    "/v1/admin/purge": "admin",
    "/v1/admin/audit": "admin",
    "/v1/versions/stats": "admin",
}
"""The scope each route needs; other paths (the OpenAPI document, unknown routes) need any valid key."""
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class KeyFileError(ValueError):
    """A key file line that is not ``NAME SCOPES sha256:HEX``, named by file and line."""


@dataclass(frozen=True)
class ApiKey:
    """A key's name, scopes and the SHA-256 of the key (``sha256:<hex>``)."""

    name: str
    scopes: tuple[str, ...]
    digest: str

    def line(self) -> str:
        return f"{self.name} {','.join(self.scopes)} {self.digest}"


OPEN_KEY = ApiKey("open", SCOPES, "")
"""What a request carries when no key is configured (the open laptop mode)."""


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str, where: str = "scopes") -> tuple[str, ...]:
    """``chat,feedback`` -> ``("chat", "feedback")`` in canonical order; an unknown scope is an error."""
    given = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in given if s not in SCOPES]
    if unknown or not given:
        raise KeyFileError(f"{where}: unknown or missing scope {', '.join(unknown) or repr(text)}; scopes are {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def parse_key_line(line: str, where: str) -> ApiKey | None:
    """One key file line (``#`` comments and blank lines give None)."""
    fields = line.split("#", 1)[0].split()
    if not fields:
        return None
    if len(fields) != 3 or not HASH.match(fields[2]):
        raise KeyFileError(f"{where}: expected 'NAME SCOPES sha256:HEX' (plain keys are not accepted; add keys with 'medgo serve keys add')")
    if not KEY_NAME.match(fields[0]):
        raise KeyFileError(f"{where}: key name {fields[0]!r} must match {KEY_NAME.pattern}")
    return ApiKey(fields[0], parse_scopes(fields[1], where), fields[2])


def read_key_file(path: str | Path) -> list[ApiKey]:
    """Every key in a key file; a missing file, a bad line or a repeated name is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"api_key_file not found: {path}")
    keys: dict[str, ApiKey] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        key = parse_key_line(line, f"{path}:{number}")
        if key is None:
            continue
        if key.name in keys:
            raise KeyFileError(f"{path}:{number}: key name {key.name!r} appears twice")
        keys[key.name] = key
    return list(keys.values())


def env_keys(env_var: str | None) -> list[ApiKey]:
    """Keys in ``$env_var``, named ``env-1``, ``env-2``..., with every scope."""
    raw = os.environ.get(env_var, "") if env_var else ""
    return [ApiKey(f"env-{i}", SCOPES, hash_key(k)) for i, k in enumerate(raw.replace(",", " ").split(), start=1)]


class KeyRing:
    """The accepted keys; a key file is read again when it changes (revocations take effect)."""

    def __init__(self, env_var: str | None, key_file: str | None):
        self.env_var, self.key_file = env_var, key_file
        self.env = env_keys(env_var)
        self._stamp: tuple | None = None
        self._from_file: list[ApiKey] = []
        if key_file:
            self._reload(strict=True)
        if self.env:
            logger.warning("%d API key(s) from $%s, named env-1.. with every scope; production uses a key file of scoped, hashed keys", len(self.env), env_var)
        if self.open:
            logger.warning("no API keys configured ($%s / api_key_file): the API is OPEN to anyone who can reach it", env_var)

    @property
    def open(self) -> bool:
        return not self.key_file and not self.env

    def _reload(self, strict: bool = False) -> None:
        try:
            stat = os.stat(self.key_file)
        except FileNotFoundError:
            if strict:
                raise FileNotFoundError(f"api_key_file not found: {self.key_file}") from None
            logger.error("api_key_file %s disappeared: keeping the keys read before", self.key_file)
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return
        try:
            self._from_file = read_key_file(self.key_file)
        except KeyFileError as exc:
            if strict:
                raise
            logger.error("api_key_file changed but is invalid (%s): keeping the keys read before", exc)
        self._stamp = stamp

    def keys(self) -> list[ApiKey]:
        if self.key_file:
            self._reload()
        return [*self._from_file, *self.env]

    def lookup(self, header: str | None) -> ApiKey | None:
        """The key an ``Authorization: Bearer <key>`` header names, compared in constant time; None if none."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        digest = hash_key(token)
        found = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


# ----------------------------------------------------------------------------- key file management


def write_key_file(path: Path, keys: list[ApiKey]) -> None:
    """Replace the key file atomically, readable by its owner only."""
    header = "# MedGo API keys: NAME SCOPES sha256:HASH (medgo serve keys add/list/revoke)\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(header + "".join(k.line() + "\n" for k in keys))
    os.replace(tmp, path)


def add_key(path: str | Path, name: str, scopes: str) -> str:
    """Add a key named ``name`` to the key file (created if missing); returns the new key, which is not stored."""
    path = Path(path)
    if not KEY_NAME.match(name) or name.startswith("env-"):
        raise KeyFileError(f"key name {name!r} must match {KEY_NAME.pattern} and not start with 'env-'")
    keys = read_key_file(path) if path.exists() else []
    if any(k.name == name for k in keys):
        raise KeyFileError(f"{path}: a key named {name!r} exists; revoke it first")
    key = "medgo-" + secrets.token_urlsafe(32)
    write_key_file(path, [*keys, ApiKey(name, parse_scopes(scopes), hash_key(key))])
    return key


def revoke_key(path: str | Path, name: str) -> None:
    """Remove the key named ``name`` from the key file; an unknown name is an error."""
    path = Path(path)
    keys = read_key_file(path)
    if not any(k.name == name for k in keys):
        raise KeyFileError(f"{path}: no key named {name!r}")
    write_key_file(path, [k for k in keys if k.name != name])


# ----------------------------------------------------------------------------- middleware


class Guard:
    """ASGI middleware: key (401), scope (403), then body size (413; the body is read once and replayed)."""

    def __init__(self, app, keys: KeyRing, max_body_bytes: int):
        self.app, self.keys, self.max_body_bytes = app, keys, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        refusal = None if path in OPEN_PATHS or (path + "/").startswith(OPEN_PREFIX) else self._authorise(scope, path)
        if refusal is not None:
            return await refusal(scope, receive, send)
        body, too_large = await self._read_body(scope, receive)
        if too_large:
            response = error_response(413, f"request body exceeds {self.max_body_bytes} bytes", code="body_too_large")
            return await response(scope, receive, send)
        return await self.app(scope, _replay(body, receive), send)

    def _authorise(self, scope, path: str):
        """None when the request may go on (its key put in ``state.api_key``), else the 401/403 response."""
        key = OPEN_KEY if self.keys.open else self.keys.lookup(dict(scope["headers"]).get(b"authorization", b"").decode("latin-1"))
        if key is None:
            return error_response(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        needed = ROUTE_SCOPES.get(path)
        if needed and needed not in key.scopes:
            return error_response(403, f"API key {key.name!r} lacks the {needed!r} scope needed for {path}", code="insufficient_scope")
        scope.setdefault("state", {})["api_key"] = key
        return None

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
