"""Continuous batching: the requests on one model replica share every forward pass.

A request joins the running batch between two decoding steps (new prompts are prefilled
together and their KV caches merged into the batch's, left-padded), and leaves it as soon as
it finishes.  Each request keeps its own sampling settings (temperature, top-p, seed, stop
strings, token limit) and its own LoRA adapter: PEFT applies a different adapter to each row
of one batch (``adapter_names``).  One thread drives the model; asyncio callers read events::

    engine = Engine(model, tokenizer, max_batch_size=16)
    async for event in engine.generate(GenerationRequest(prompt_ids=ids, max_tokens=32)):
        print(event)          # Delta(text=...) ... then Finish(reason=..., completion_tokens=..., text=...)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import DynamicCache

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch
MIN_TEMPERATURE = 1e-4  # below it sampling is greedy (logits / temperature would overflow)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt (token ids) and how to continue it."""

    prompt_ids: list[int]
    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    adapter: str | None = None
    """PEFT adapter name loaded on the model; ``None`` for the base model."""
    ignore_eos: bool = False
    """Keep generating past end-of-sequence tokens (benchmarks: fixed output length)."""
    stream: bool = True
    """Send :class:`Delta` events as text arrives; ``False``: only the :class:`Finish` with all text."""


@dataclass(frozen=True)
class Delta:
    """New text of one request."""

    text: str


@dataclass(frozen=True)
class Finish:
    """A request is done: why, how many tokens it generated, when its first token came, all its text."""

    reason: str
    completion_tokens: int
    first_token_s: float
    text: str


@dataclass(frozen=True)
class Failure:
    """The model raised while this request was in the batch."""

    error: str


Event = Delta | Finish | Failure


@dataclass(eq=False)
class Sequence:
    """Decoding state of one request inside the engine."""

    request: GenerationRequest
    sink: Callable[[Event], None]
    generator: torch.Generator
    loop: asyncio.AbstractEventLoop | None = None
    """When set, ``sink`` runs on this event loop (events of one step are sent in one call)."""
    tokens: list[int] = field(default_factory=list)
    position: int = 0
    sent: int = 0
    done: bool = False
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    first_token_s: float = 0.0


class Engine:
    """Runs one model for many concurrent requests; thread-safe ``submit`` and async ``generate``."""

    def __init__(self, model, tokenizer, max_batch_size: int = 16, batch_wait_s: float = 0.0, step_delay_s: float = 0.0, eos_token_ids: set[int] | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch_size, self.batch_wait_s, self.step_delay_s = max_batch_size, batch_wait_s, step_delay_s
        self.device = next(model.parameters()).device
        self.eos_ids = eos_token_ids if eos_token_ids is not None else default_eos_ids(model, tokenizer)
        self.uses_adapters = isinstance(model, PeftModel)
        self.pending: queue.Queue[Sequence | None] = queue.Queue()
        self.rows: list[Sequence] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None
        self.last_step = time.monotonic()
        self.steps = 0
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[Callable, Event]]] = {}
        self._calls: queue.Queue[tuple[Callable, concurrent.futures.Future]] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="medgo-engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- public API
    def submit(self, request: GenerationRequest, sink: Callable[[Event], None], loop: asyncio.AbstractEventLoop | None = None) -> Sequence:
        """Queue a request; ``sink`` receives its events on ``loop``, or on the engine thread."""
        if self._closed:
            raise RuntimeError("engine is closed")
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        seq = Sequence(request, sink, gen, loop, position=len(request.prompt_ids))
        self.pending.put(seq)
        return seq

    def call(self, fn: Callable[[], object]) -> concurrent.futures.Future:
        """Run ``fn()`` on the engine thread between two forward passes (e.g. to load an adapter)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((fn, future))
        self.pending.put(None)  # wakes an idle engine
        return future

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Events of one request; leaving the loop early cancels it."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()
        seq = self.submit(request, events.put_nowait, loop)
        try:
            while True:
                event = await events.get()
                while isinstance(event, Delta) and not events.empty():  # a slow reader gets fewer, longer deltas
                    following = events.get_nowait()
                    if not isinstance(following, Delta):
                        yield event
                        event = following
                        break
                    event = Delta(event.text + following.text)
                yield event
                if not isinstance(event, Delta):
                    return
        finally:
            seq.cancelled = True

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def busy(self) -> bool:
        return bool(self.rows) or not self.pending.empty()

    def close(self) -> None:
        self._closed = True
        self.pending.put(None)
        self._thread.join(timeout=10)

    # ----------------------------------------------------------------- engine thread
    def _run(self) -> None:
        with torch.inference_mode():
            while not self._closed:
                self._run_calls()
                new = self._take_pending()
                try:
                    if new:
                        self._prefill(new)
                    if self.rows:
                        self._decode()
                except Exception as exc:  # noqa: BLE001 - every waiting caller must hear of it
                    self._fail(new + self.rows, exc)
                self._flush()
            self._fail(self.rows + self._drain(), RuntimeError("engine closed"))
            self._flush()

    def _run_calls(self) -> None:
        while not self._calls.empty():
            fn, future = self._calls.get_nowait()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except Exception as exc:  # noqa: BLE001 - the caller hears of it
                    future.set_exception(exc)

    def _drain(self) -> list[Sequence]:
        """Every queued sequence, without waiting."""
        out = []
        while True:
            try:
                item = self.pending.get_nowait()
            except queue.Empty:
                return out
            if item is not None:
                out.append(item)

    def _take_pending(self) -> list[Sequence]:
        """New sequences for free batch slots; blocks (then waits briefly for company) when idle."""
        taken: list[Sequence] = []
        if not self.rows:
            first = self.pending.get()
            if first is None:
                return []
            taken.append(first)
            deadline = time.monotonic() + self.batch_wait_s
            while len(taken) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                try:
                    item = self.pending.get(timeout=left)
                except queue.Empty:
                    break
                if item is not None:
                    taken.append(item)
        while len(self.rows) + len(taken) < self.max_batch_size:
            try:
                item = self.pending.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                taken.append(item)
        return [s for s in taken if not s.cancelled]

    def _prefill(self, seqs: list[Sequence]) -> None:
        width = max(len(s.request.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            n = len(s.request.prompt_ids)
            ids[i, width - n:] = torch.tensor(s.request.prompt_ids)
            mask[i, width - n:] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self._forward(ids, mask, positions, cache, seqs)
        self._merge(seqs, cache, mask.to(self.device))
        self._advance(seqs, logits)

    def _decode(self) -> None:
        ids = torch.tensor([[s.tokens[-1]] for s in self.rows])
        positions = torch.tensor([[s.position] for s in self.rows])
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        logits = self._forward(ids, self.mask, positions, self.cache, self.rows)
        for s in self.rows:
            s.position += 1
        self._advance(list(self.rows), logits)

    def _forward(self, ids, mask, positions, cache, seqs: list[Sequence]) -> torch.Tensor:
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        extra = {"adapter_names": [s.request.adapter or BASE_ADAPTER for s in seqs]} if self.uses_adapters else {}
        out = self.model(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), position_ids=positions.to(self.device),
            cache=cache, use_cache=True, logits_to_keep=1, **extra,
        )
        self.steps += 1
        self.last_step = time.monotonic()
        return out.logits[:, -1].float()

    def _advance(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        """Sample one token per sequence, emit text, then drop finished or cancelled rows."""
        for seq, token in zip(seqs, sample(logits, seqs), strict=True):
            if not seq.cancelled:
                self._push(seq, token)
        for seq in self.rows:
            seq.done = seq.done or seq.cancelled
        self._prune()

    def _push(self, seq: Sequence, token: int) -> None:
        req = seq.request
        if not seq.tokens:
            seq.first_token_s = time.perf_counter() - seq.submitted
        seq.tokens.append(token)
        reason = None
        if token in self.eos_ids and not req.ignore_eos:
            reason = "stop"
        elif len(seq.tokens) >= req.max_tokens:
            reason = "length"
        if not (req.stream or req.stop or reason):  # nobody reads the text before the end
            return
        text = self.tokenizer.decode(seq.tokens, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in req.stop) if i >= 0), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        if reason is None:
            text = _hold_back(text, req.stop)
        if req.stream and len(text) > seq.sent:
            self._emit(seq, Delta(text[seq.sent:]))
            seq.sent = len(text)
        if reason is not None:
            seq.done = True
            self._emit(seq, Finish(reason, len(seq.tokens), seq.first_token_s, text))

    def _emit(self, seq: Sequence, event: Event) -> None:
        if seq.loop is None:
            seq.sink(event)
        else:
            self._outbox.setdefault(seq.loop, []).append((seq.sink, event))

    def _flush(self) -> None:
        """One thread-safe call per event loop per step (waking a loop per token costs too much)."""
        outbox, self._outbox = self._outbox, {}
        for loop, items in outbox.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the caller's loop is closed: nobody is listening
                pass

    # ----------------------------------------------------------------- KV cache bookkeeping
    def _merge(self, seqs: list[Sequence], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append freshly prefilled rows to the running batch, left-padding the shorter side."""
        if not self.rows:
            self.rows, self.cache, self.mask = list(seqs), cache, mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)], dim=0)
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)], dim=0)
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(mask, width, dim=1)], dim=0)
        self.rows.extend(seqs)

    def _prune(self) -> None:
        keep = [i for i, s in enumerate(self.rows) if not s.done]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.rows = [self.rows[i] for i in keep]
        start = int(self.mask.any(dim=0).nonzero()[0])  # columns left of it are padding in every row
        if start:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
            self.mask = self.mask[:, start:]

    def _fail(self, seqs: list[Sequence], exc: Exception) -> None:
        for seq in seqs:
            if not seq.done:
                seq.done = True
                self._emit(seq, Failure(f"{type(exc).__name__}: {exc}"))
        self.rows, self.cache, self.mask = [], None, None


def sample(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """Greedy below ``MIN_TEMPERATURE``, else temperature + nucleus (top-p) sampling with each row's own RNG."""
    tokens = logits.argmax(dim=-1).tolist()
    rows = [i for i, s in enumerate(seqs) if s.request.temperature >= MIN_TEMPERATURE]
    if not rows:
        return tokens
    temps = torch.tensor([seqs[i].request.temperature for i in rows], device=logits.device)
    probs = torch.softmax(logits[rows] / temps[:, None], dim=-1).nan_to_num_(0.0)
    nucleus = [j for j, i in enumerate(rows) if seqs[i].request.top_p < 1]
    if nucleus:  # sorting the vocabulary is the costly part: only for rows that need it
        top_p = torch.tensor([seqs[rows[j]].request.top_p for j in nucleus], device=logits.device)
        sorted_probs, order = probs[nucleus].sort(dim=-1, descending=True)
        sorted_probs[(sorted_probs.cumsum(-1) - sorted_probs) >= top_p[:, None]] = 0.0
        probs[nucleus] = torch.zeros_like(sorted_probs).scatter_(-1, order, sorted_probs)
    # Inverse-CDF draw: one uniform number from each row's own generator (torch.multinomial
    # costs ~0.5 ms per row on a CPU, which made sampling dominate the step).
    cdf = probs.cumsum(dim=-1)
    u = torch.cat([torch.rand(1, generator=seqs[i].generator, device=logits.device) for i in rows])
    picks = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1).tolist()
    usable = (cdf[:, -1] > 0).tolist()
    for j, i in enumerate(rows):
        if usable[j]:  # else keep the greedy token (logits beyond float range)
            tokens[i] = picks[j]
    return tokens


def default_eos_ids(model, tokenizer) -> set[int]:
    """End-of-sequence ids: the model's generation config plus the tokenizer's EOS and ``<|im_end|>``."""
    ids = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return ids


def _deliver(items: list[tuple[Callable, Event]]) -> None:
    for sink, event in items:
        sink(event)


def _pad_left(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim) + [missing, 0]
    return F.pad(t, pad)


def _hold_back(text: str, stop: tuple[str, ...]) -> str:
    """Text safe to send while generating: no partial UTF-8 character, no possible stop-string prefix."""
    text = text.rstrip("\ufffd")
    keep = max((len(s) for s in stop), default=1) - 1
    return text[: len(text) - keep] if keep else text
