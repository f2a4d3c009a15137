"""Prometheus metrics, served at /metrics.

With several worker processes (`gigcx serve --workers N`) each one writes its figures to
PROMETHEUS_MULTIPROC_DIR and /metrics adds them up, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter("gigcx_http_requests", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "gigcx_http_request_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter(
    "gigcx_bot_decisions", "What the bot did with a customer's message", ["action", "reason"]
)
BOT_REPLY_SECONDS = Histogram(
    "gigcx_bot_reply_seconds",
    "From the customer's message stored to the bot's reply or handover stored",
    buckets=LATENCY_BUCKETS,
)
HANDOFFS_WAITING = Gauge(
    "gigcx_handoffs_waiting", "Handoffs nobody has claimed yet", multiprocess_mode="mostrecent"
)
HANDOFFS_ASSIGNED = Gauge(
    "gigcx_handoffs_assigned", "Handoffs an expert holds", multiprocess_mode="mostrecent"
)
OUTBOX = Gauge(
    "gigcx_outbox_items",
    "Changes the channels (Slack, e-mail, ...) have not been told yet",
    multiprocess_mode="mostrecent",
)
TIME_TO_CLAIM = Histogram(
    "gigcx_time_to_claim_seconds",
    "From the escalation to an expert's claim",
    buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200),
)
RELAY_SECONDS = Histogram(
    "gigcx_relay_seconds",
    "From a message stored to it reaching the other side (customer WebSocket or Slack)",
    ["to"],
    buckets=LATENCY_BUCKETS,
)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
