"""The example brand's expert registry, loaded as `gigcx experts sync` loads it."""

from __future__ import annotations

from gigcx.app import GigCX
from gigcx.escalation.roster import sync_experts

# From examples/kestrel/experts.yaml: gig (capacity 3), gig (capacity 2), staff (capacity 6).
ALEX, SAMI, JORDAN = "U04ALEXM", "U04SAMIK", "U04JORDN"


async def register_experts(runtime: GigCX) -> None:
    settings = runtime.settings
    await sync_experts(runtime.store, settings.brand, settings.escalation.experts_file)
