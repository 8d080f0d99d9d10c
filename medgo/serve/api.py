"""The OpenAI-compatible HTTP API (FastAPI), in front of any model backend.

:func:`build_api` wires routes to a backend with ``complete(params)``/``stream(params)``/``info()``:
in Serve that is the ``MedGoModel`` deployment behind a handle (:class:`HandleBackend`), in
tests and benchmarks a :class:`~medgo.serve.model.ModelRunner` in the same process.

    POST /v1/chat/completions   POST /v1/completions   GET /v1/models       (scope chat)
    POST /v1/feedback                                                        (scope feedback)
    GET  /v1/review/queue                                                    (scope review)
    GET  /v1/feedback/export    POST /v1/admin/purge   GET /v1/admin/audit   (scope admin)
    GET  /v1/versions/stats                                                  (scope admin)
    GET  /v1/me                                                              (any key)
    GET  /healthz               GET /ui/  (the doctors' workbench, medgo.serve.ui)   (no key)

Scopes and keys: :mod:`medgo.serve.security`.  The review queue and the export are de-identified;
every export and purge is written to the audit table under the key's name.  Logs carry ids,
token counts and timings, never prompt or answer text.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPBearer
from ray.serve.exceptions import BackPressureError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from medgo.flywheel.routing import VERSION_HEADER, request_bucket
from medgo.serve.metrics import ServeMetrics
from medgo.serve.protocol import (
    APIError, AuditLog, ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest, ErrorResponse, FeedbackRequest,
    FeedbackResponse, KeyInfo, ModelCard, ModelList, PurgeRequest, PurgeResponse, ReviewQueue, VersionStatsList, error_response, new_id, now,
)
from medgo.serve.security import OPEN_KEY, ROUTE_SCOPES, Guard, KeyRing
from medgo.serve.settings import ServeSettings
from medgo.serve.store import FeedbackStore, UnknownResponse, iso, parse_age, utcnow
from medgo.serve.ui import ui_routes
from medgo.serve.versions import version_stats

logger = logging.getLogger("ray.serve")
ROUTES = (*ROUTE_SCOPES, "/healthz", "/v1/me")
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 503, 504)}
SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "stop", "seed", "ignore_eos")


class HandleBackend:
    """The ``MedGoModel`` deployment behind a Serve handle.

    ``grpc`` (the default transport) sends calls and streamed chunks over Serve's gRPC channel
    between replicas, pickled, instead of one Ray object per streamed chunk: the chunks of a
    stream cost the model replica, whose engine thread shares the interpreter with them, and the
    API replica less.  ``ray``: Ray actor calls and object references.
    """

    def __init__(self, handle, transport: str = "grpc"):
        if transport == "grpc":
            handle = handle.options(_by_reference=False, request_serialization="pickle", response_serialization="pickle")
        self.handle = handle

    def complete(self, params: dict):
        return self.handle.complete.remote(params)

    def stream(self, params: dict):
        return self.handle.options(stream=True).stream.remote(params)

    def info(self):
        return self.handle.info.remote()


@dataclass
class Context:
    backend: object
    settings: ServeSettings
    store: FeedbackStore
    metrics: ServeMetrics
    started: int = field(default_factory=now)
    model_info: dict | None = None


def build_api(backend, settings: ServeSettings, store: FeedbackStore, metrics: ServeMetrics | None = None) -> FastAPI:
    """The FastAPI app: API-key guard, OpenAI routes, feedback, review and admin routes, error handlers."""
    keys = KeyRing(settings.api_keys_env, settings.api_key_file)
    ctx = Context(backend, settings, store, metrics or ServeMetrics())
    # No /docs or /redoc pages: they load scripts from a CDN, and nothing here may reach the internet.
    app = FastAPI(title="MedGo API", version="1", summary="OpenAI-compatible chat API of a Chinese medical LLM, with doctors' feedback",
                  docs_url=None, redoc_url=None)
    _error_handlers(app)
    app.add_middleware(Guard, keys=keys, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(CountRequests, metrics=ctx.metrics)
    router = APIRouter(dependencies=[Depends(HTTPBearer(auto_error=False))])  # documents the scheme; Guard enforces it
    _completion_routes(router, ctx)
    _feedback_routes(router, ctx)
    _review_routes(router, ctx)
    _admin_routes(router, ctx)
    app.include_router(router)
    ui_routes(app)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    _document_model_names(app, settings.model_names())
    return app


def _document_model_names(app: FastAPI, names: list[str]) -> None:
    """List this server's model names as the ``model`` field's values in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for name in ("ChatCompletionRequest", "CompletionRequest"):
                schema["components"]["schemas"][name]["properties"]["model"]["enum"] = names
        return app.openapi_schema

    app.openapi = openapi


# ----------------------------------------------------------------------------- completions
def _completion_routes(router: APIRouter, ctx: Context) -> None:
    @router.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def models() -> ModelList:
        info = await model_info(ctx)
        base = ctx.settings.served_model_name
        cards = [ModelCard(id=base, created=ctx.started, version=info["versions"].get(base))]
        cards += [ModelCard(id=name, created=ctx.started, parent=base, version=info["versions"].get(name)) for name in ctx.settings.adapters]
        return ModelList(data=cards)

    @router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
    async def chat(body: ChatCompletionRequest, request: Request, response: Response):
        params = sampling_params(ctx.settings, body, body.max_completion_tokens or body.max_tokens)
        params.update(kind="chat", messages=[{"role": m.role, "content": m.text()} for m in body.messages])
        params["bucket"] = request_bucket(request.headers, body.user, key_name(request), messages=params["messages"])
        return await completion(ctx, body, params, "/v1/chat/completions", response)

    @router.post("/v1/completions", response_model=Completion, responses=ERRORS)
    async def text(body: CompletionRequest, request: Request, response: Response):
        params = sampling_params(ctx.settings, body, body.max_tokens)
        params.update(kind="text", prompt=body.prompt)
        params["bucket"] = request_bucket(request.headers, body.user, key_name(request), prompt=body.prompt)
        return await completion(ctx, body, params, "/v1/completions", response)


def sampling_params(settings: ServeSettings, body, max_tokens: int | None) -> dict:
    """Checks that need the server's settings (model name, token limit); the rest is pydantic's."""
    if body.model not in settings.model_names():
        raise APIError(404, f"model {body.model!r} does not exist; available: {', '.join(settings.model_names())}", "model", "model_not_found")
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        raise APIError(400, f"max_tokens must be at most {settings.max_tokens_limit}", "max_tokens", "max_tokens_too_large")
    return {"model": body.model, "max_tokens": max_tokens, "temperature": body.temperature, "top_p": body.top_p,
            "stop": body.stop or [], "seed": body.seed, "ignore_eos": body.ignore_eos}


async def completion(ctx: Context, body, params: dict, route: str, response: Response | None = None):
    """Answer a request; a flywheel-routed answer names its version in the ``X-MedGo-Version`` header."""
    started = time.perf_counter()
    rid = new_id("chatcmpl" if params["kind"] == "chat" else "cmpl")
    if body.stream:
        return await stream_completion(ctx, body, params, route, rid, started)
    result = await call_model(ctx, ctx.backend.complete(params))
    raise_for_error(result)
    latency = time.perf_counter() - started
    await record(ctx, rid, params, result, latency, route)
    if response is not None and result.get("version"):
        response.headers[VERSION_HEADER] = result["version"]
    usage = {"prompt_tokens": result["prompt_tokens"], "completion_tokens": result["completion_tokens"], "total_tokens": result["prompt_tokens"] + result["completion_tokens"]}
    common = {"id": rid, "created": now(), "model": params["model"], "usage": usage, "system_fingerprint": result["base_version"]}
    if params["kind"] == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": result["text"]}, "finish_reason": result["finish_reason"], "logprobs": None}
        return ChatCompletion(object="chat.completion", choices=[choice], **common)
    return Completion(object="text_completion", choices=[{"index": 0, "text": result["text"], "finish_reason": result["finish_reason"], "logprobs": None}], **common)


async def stream_completion(ctx: Context, body, params: dict, route: str, rid: str, started: float) -> StreamingResponse:
    events = ctx.backend.stream(params)
    head = await call_model(ctx, anext(events), events)
    if "error" in head:
        await close_stream(events)
        raise_for_error(head)
    chunks = ChunkWriter(rid, params["model"], params["kind"], head["base_version"], bool(body.stream_options and body.stream_options.include_usage))

    async def sse() -> AsyncIterator[str]:
        # Chunks that follow one another at once share one body message (on to the proxy, then
        # the client): the chat role chunk rides with the first text, the end with [DONE].
        parts, final, opening, closing = [], None, chunks.first() if params["kind"] == "chat" else "", ""
        try:
            async for event in events:
                if "error" in event:
                    closing = sse_data({"error": _public_error(event["error"])})
                    break
                if event.get("delta"):
                    parts.append(event["delta"])
                    yield opening + chunks.delta(event["delta"])
                    opening = ""
                if "finish_reason" in event:
                    final = event
            if final is not None:
                result = {**head, **final, "text": "".join(parts)}
                await record(ctx, rid, params, result, time.perf_counter() - started, route)
                closing = chunks.last(result)
        except APIError as err:
            closing = sse_data({"error": {"message": err.message, "type": "server_error", "param": err.param, "code": err.code}})
        finally:
            await close_stream(events)
        yield opening + closing + "data: [DONE]\n\n"

    version = {VERSION_HEADER: head["version"]} if head.get("version") else {}
    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Request-Id": rid, **version})


class ChunkWriter:
    """OpenAI streaming chunks (``chat.completion.chunk`` or ``text_completion``) as SSE lines."""

    def __init__(self, rid: str, model: str, kind: str, fingerprint: str, include_usage: bool):
        self.rid, self.model, self.kind, self.fingerprint, self.include_usage = rid, model, kind, fingerprint, include_usage
        self.created = now()

    def _chunk(self, choices: list, usage: dict | None = None) -> str:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        body = {"id": self.rid, "object": obj, "created": self.created, "model": self.model, "system_fingerprint": self.fingerprint, "choices": choices}
        if self.include_usage:
            body["usage"] = usage
        return sse_data(body)

    def _choice(self, text: str | None, finish_reason: str | None = None, role: bool = False) -> dict:
        if self.kind == "chat":
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
            return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}

    def first(self) -> str:
        """Chat streams open with the assistant role."""
        return self._chunk([self._choice(None, role=True)])

    def delta(self, text: str) -> str:
        return self._chunk([self._choice(text)])

    def last(self, result: dict) -> str:
        """The chunk with ``finish_reason`` and, when asked for, the usage chunk after it."""
        out = self._chunk([self._choice(None, result["finish_reason"])])
        if self.include_usage:
            p, c = result["prompt_tokens"], result["completion_tokens"]
            out += self._chunk([], {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
        return out


def sse_data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def call_model(ctx: Context, awaitable, response=None):
    """Await the model, turning full queues into 503 + Retry-After and slowness into 504."""
    response = response if response is not None else awaitable
    try:
        return await asyncio.wait_for(_await(awaitable), ctx.settings.request_timeout_s)
    except BackPressureError as exc:
        retry = math.ceil(exc.retry_after_s) if exc.retry_after_s is not None else ctx.settings.retry_after_s
        raise APIError(503, "all model replicas are busy; retry later", code="overloaded", headers={"Retry-After": str(retry)}) from None
    except (asyncio.TimeoutError, TimeoutError):
        _cancel(response)
        raise APIError(504, f"no answer within {ctx.settings.request_timeout_s:.0f}s", code="timeout") from None
    except StopAsyncIteration:
        raise APIError(500, "the model returned no events", code="model_error") from None


async def _await(awaitable):
    return await awaitable


def _cancel(response) -> None:
    cancel = getattr(response, "cancel", None)
    if callable(cancel):
        cancel()


async def close_stream(events) -> None:
    if hasattr(events, "aclose"):
        await events.aclose()
    else:
        _cancel(events)


def raise_for_error(result: dict) -> None:
    if "error" in result:
        err = result["error"]
        raise APIError(err["status"], err["message"], err.get("param"), err.get("code"))


def _public_error(err: dict) -> dict:
    return {"message": err["message"], "type": "server_error" if err["status"] >= 500 else "invalid_request_error", "param": err.get("param"), "code": err.get("code")}


async def model_info(ctx: Context) -> dict:
    if ctx.model_info is None:
        ctx.model_info = await call_model(ctx, ctx.backend.info())
    return ctx.model_info


async def record(ctx: Context, rid: str, params: dict, result: dict, latency: float, route: str) -> None:
    """Store the completion (before the client gets its id), count it, log it without text."""
    name = params["model"]
    prompt = params["messages"] if params["kind"] == "chat" else params["prompt"]
    fields = dict(
        id=rid, endpoint=params["kind"], model=name, base_version=result["base_version"],
        adapter=result.get("version") or (name if name != ctx.settings.served_model_name else None), adapter_version=result.get("adapter_version"),
        prompt=prompt, answer=result["text"], params={k: params[k] for k in SAMPLING_KEYS}, finish_reason=result["finish_reason"],
        prompt_tokens=result["prompt_tokens"], completion_tokens=result["completion_tokens"], latency_s=latency,
    )
    try:
        await run_in_threadpool(lambda: ctx.store.add_completion(**fields))
    except SQLAlchemyError as exc:
        logger.error("could not store completion %s: %s", rid, type(exc).__name__)
        raise APIError(503, "the answer could not be recorded; retry the request", code="store_unavailable", headers={"Retry-After": str(ctx.settings.retry_after_s)}) from None
    ctx.metrics.completion(route, name, latency, result.get("ttft_s", latency), result["prompt_tokens"], result["completion_tokens"])
    logger.info("%s id=%s model=%s prompt_tokens=%d completion_tokens=%d finish=%s latency=%.3fs ttft=%.3fs", route, rid, name,
                result["prompt_tokens"], result["completion_tokens"], result["finish_reason"], latency, result.get("ttft_s", 0.0))


# ----------------------------------------------------------------------------- feedback
def _feedback_routes(router: APIRouter, ctx: Context) -> None:
    @router.post("/v1/feedback", response_model=FeedbackResponse, status_code=201, responses={200: {"model": FeedbackResponse, "description": "identical feedback already stored"}, **ERRORS})
    async def feedback(body: FeedbackRequest, request: Request, response: Response) -> FeedbackResponse:
        fields = {**body.model_dump(), "reviewer": key_name(request)}
        try:
            stored = await run_in_threadpool(lambda: ctx.store.add_feedback(**fields))
        except UnknownResponse:
            raise APIError(404, f"no completion with id {body.response_id!r}", "response_id", "response_not_found") from None
        except SQLAlchemyError as exc:
            logger.error("could not store feedback on %s: %s", body.response_id, type(exc).__name__)
            raise APIError(503, "feedback could not be stored; retry", code="store_unavailable", headers={"Retry-After": str(ctx.settings.retry_after_s)}) from None
        response.status_code = 201 if stored.created else 200
        ctx.metrics.feedback_posted(stored.verdict, stored.created)
        logger.info("feedback id=%d response=%s verdict=%s new=%s", stored.id, stored.response_id, stored.verdict, stored.created)
        return FeedbackResponse(id=stored.id, response_id=stored.response_id, verdict=stored.verdict, duplicate=not stored.created, supersedes=stored.supersedes)

    @router.get("/v1/me", response_model=KeyInfo, responses=ERRORS)
    async def me(request: Request) -> KeyInfo:
        """The name and scopes of the key this request came with."""
        key = getattr(request.state, "api_key", OPEN_KEY)
        return KeyInfo(name=key.name, scopes=list(key.scopes))



def key_name(request: Request) -> str:
    """The name of the key the request came with (``open`` when no key is configured)."""
    return getattr(request.state, "api_key", OPEN_KEY).name


async def stored(ctx: Context, what: str, work):
    """Run a store call in a thread; a database failure is a 503 naming ``what``."""
    try:
        return await run_in_threadpool(work)
    except SQLAlchemyError as exc:
        logger.error("could not %s: %s", what, type(exc).__name__)
        raise APIError(503, f"could not {what}; retry", code="store_unavailable", headers={"Retry-After": str(ctx.settings.retry_after_s)}) from None


def _review_routes(router: APIRouter, ctx: Context) -> None:
    @router.get("/v1/review/queue", response_model=ReviewQueue, responses=ERRORS)
    async def review_queue(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000),
                           model: str | None = Query(None, min_length=1, max_length=256, description="only answers of this served model (the base or an adapter)")) -> ReviewQueue:
        """Completions that await a doctor's judgement, newest first, with identifiers replaced."""
        def page():
            return *ctx.store.review_queue(limit, offset, model), ctx.store.queue_models()

        items, counts, models = await stored(ctx, "read the review queue", page)
        return ReviewQueue(data=items, deidentified=dict(sorted(counts.items())), models=models)


def _admin_routes(router: APIRouter, ctx: Context) -> None:
    @router.get("/v1/feedback/export", responses={200: {"content": {"application/x-ndjson": {}}}, **ERRORS})
    async def export(request: Request, since: datetime | None = Query(None, description="only feedback given at or after this time"),
                     limit: int = Query(10_000, ge=1, le=100_000)) -> Response:
        """Judged completions as de-identified JSON lines (the preference stage's input); audited."""
        def lines() -> tuple[str, int, dict]:
            out, counts = io.StringIO(), Counter()
            n = ctx.store.export_jsonl(out, since, limit=limit, counts=counts)
            ctx.store.audit(key_name(request), "api", "export", {"since": since.isoformat() if since else None, "limit": limit}, n, {"replaced": dict(counts)})
            return out.getvalue(), n, counts

        body, n, counts = await stored(ctx, "export feedback", lines)
        logger.info("export key=%s records=%d", key_name(request), n)
        return Response(body, media_type="application/x-ndjson", headers={"X-Deidentified": json.dumps(dict(sorted(counts.items())))})

    @router.post("/v1/admin/purge", response_model=PurgeResponse, responses=ERRORS)
    async def purge(body: PurgeRequest, request: Request) -> PurgeResponse:
        """Delete (or de-identify) stored completions older than ``older_than``, with their feedback; audited."""
        before = utcnow() - parse_age(body.older_than)
        args = {"older_than": body.older_than, "mode": body.mode, "before": iso(before)}
        result = await stored(ctx, "purge", lambda: ctx.store.purge(before, body.mode, actor=key_name(request), source="api", arguments=args))
        logger.info("purge key=%s mode=%s completions=%d feedback=%d", key_name(request), body.mode, result["completions"], result["feedback"])
        return PurgeResponse(before=iso(before), mode=body.mode, **result)

    @router.get("/v1/versions/stats", response_model=VersionStatsList, responses=ERRORS)
    async def versions() -> VersionStatsList:
        """Per served version: answers, current judgements, acceptance rate with its 95% Wilson interval."""
        return VersionStatsList(data=await stored(ctx, "read the version statistics", lambda: version_stats(ctx.store)))

    @router.get("/v1/admin/audit", response_model=AuditLog, responses=ERRORS)
    async def audit(limit: int = Query(100, ge=1, le=10_000)) -> AuditLog:
        """The newest exports and purges first."""
        return AuditLog(data=await stored(ctx, "read the audit log", lambda: ctx.store.audit_log(limit)))


# ----------------------------------------------------------------------------- plumbing
def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return error_response(400, "request body is not valid JSON", code="invalid_json")
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        return error_response(400, f"{param}: {first['msg']}" if param else first["msg"], param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crash(_request, exc: Exception):
        logger.error("unhandled %s in the API", type(exc).__name__)
        return error_response(500, "internal server error", code="internal_error")


class CountRequests:
    """ASGI middleware counting every answer by route and status (401s and 413s included)."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        root, path = scope.get("root_path", ""), scope["path"]
        path = path[len(root):] if root and path.startswith(root) else path
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.request(path if path in ROUTES else "other", status)
