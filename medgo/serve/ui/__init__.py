"""The doctors' workbench: a web page served by the API itself, under ``/ui/``.

    serve run serve_configs/local.yaml          # then open http://127.0.0.1:8000/ui/

Plain HTML, CSS and JavaScript in ``static/``, no build step.  The page talks only to this API
(``/v1/me``, the streaming chat endpoint, ``/v1/feedback``, ``/v1/review/queue``,
``/v1/versions/stats``) with the key the doctor pasted, kept in the tab's ``sessionStorage``.
Model output and user text are put in the page as text nodes only, never parsed as HTML.

The page and its files need no key (they hold no data).  Static files are addressed by their
content hash (``static/<sha256-prefix>/app.js``) and cached for a year as immutable; the page is
revalidated on each load (ETag).  Every ``/ui`` response carries a strict Content-Security-Policy
(scripts and connections to this origin only, no inline script, no framing), ``nosniff`` and
``X-Frame-Options: DENY``.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from medgo.serve.protocol import error_response

STATIC = Path(__file__).parent / "static"
PAGE = "index.html"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
IMMUTABLE = "public, max-age=31536000, immutable"
ASSET_REF = re.compile(r"\{\{static:([\w.-]+)\}\}")


@dataclass(frozen=True)
class Asset:
    body: bytes
    digest: str
    media_type: str


def load_assets(folder: Path = STATIC) -> dict[str, Asset]:
    """Every static file but the page, by name, with the first 16 hex digits of its SHA-256."""
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != PAGE:
            body = path.read_bytes()
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            assets[path.name] = Asset(body, hashlib.sha256(body).hexdigest()[:16], f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else kind)
    return assets


def render_page(assets: dict[str, Asset], folder: Path = STATIC) -> Asset:
    """The page with each ``{{static:NAME}}`` replaced by the file's hashed address (relative to /ui/)."""
    def address(match: re.Match) -> str:
        name = match[1]
        if name not in assets:
            raise FileNotFoundError(f"{PAGE} refers to static file {name!r}, which {folder} lacks")
        return f"static/{assets[name].digest}/{name}"

    body = ASSET_REF.sub(address, (folder / PAGE).read_text(encoding="utf-8")).encode()
    return Asset(body, hashlib.sha256(body).hexdigest()[:16], "text/html; charset=utf-8")


def ui_routes(app: FastAPI) -> None:
    """Add ``GET /ui``, ``GET /ui/`` and ``GET /ui/static/<hash>/<name>`` (left out of the OpenAPI document)."""
    assets = load_assets()
    page = render_page(assets)

    @app.api_route("/ui", methods=["GET", "HEAD"], include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("ui/", status_code=308, headers=SECURITY_HEADERS)  # relative: keeps the app's route prefix

    @app.api_route("/ui/", methods=["GET", "HEAD"], include_in_schema=False)
    async def ui_page(request: Request) -> Response:
        etag = f'"{page.digest}"'
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(page.body, media_type=page.media_type, headers=headers)

    @app.api_route("/ui/static/{digest}/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    async def ui_static(digest: str, name: str) -> Response:
        asset = assets.get(name)
        if asset is None or asset.digest != digest:
            return error_response(404, f"no static file {name!r} with content hash {digest!r}", code="not_found", headers=SECURITY_HEADERS)
        return Response(asset.body, media_type=asset.media_type, headers={**SECURITY_HEADERS, "Cache-Control": IMMUTABLE, "ETag": f'"{digest}"'})
