"""Request, latency, token and feedback metrics through Ray's metrics (scraped by Prometheus).

Ray exports them on each node's metrics port with the ``ray_`` prefix, e.g.
``ray_medgo_requests_total{route="/v1/chat/completions",status="200"}``; Serve adds the
deployment, replica and application tags.  Outside Ray they are no-ops.
"""

from __future__ import annotations

from ray.serve.metrics import Counter, Histogram

LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]


class ServeMetrics:
    """The API replica's metrics; one instance per replica."""

    def __init__(self):
        self.requests = Counter("medgo_requests_total", description="API requests by route and HTTP status", tag_keys=("route", "status"))
        self.latency = Histogram("medgo_request_latency_seconds", description="Time to the whole answer", boundaries=LATENCY_BUCKETS, tag_keys=("route",))
        self.ttft = Histogram("medgo_time_to_first_token_seconds", description="Time from arrival to the first generated token", boundaries=LATENCY_BUCKETS, tag_keys=("route",))
        self.prompt_tokens = Counter("medgo_prompt_tokens_total", description="Prompt tokens processed", tag_keys=("model",))
        self.completion_tokens = Counter("medgo_completion_tokens_total", description="Tokens generated", tag_keys=("model",))
        self.feedback = Counter("medgo_feedback_total", description="Feedback posts by verdict and whether they were new", tag_keys=("verdict", "new"))

    def request(self, route: str, status: int) -> None:
        self.requests.inc(tags={"route": route, "status": str(status)})

    def completion(self, route: str, model: str, latency_s: float, ttft_s: float, prompt_tokens: int, completion_tokens: int) -> None:
        self.latency.observe(latency_s, tags={"route": route})
        self.ttft.observe(ttft_s, tags={"route": route})
        self.prompt_tokens.inc(prompt_tokens, tags={"model": model})
        if completion_tokens:
            self.completion_tokens.inc(completion_tokens, tags={"model": model})

    def feedback_posted(self, verdict: str, new: bool) -> None:
        self.feedback.inc(tags={"verdict": verdict, "new": str(new).lower()})
