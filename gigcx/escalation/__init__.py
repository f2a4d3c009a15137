"""Escalation: the handover packet, personal-data masking and the handoff state machine.

Experts and staff act on handoffs through `Escalations`; connectors learn of every change
through events.
"""

from gigcx.escalation.lifecycle import ClaimRefused, Escalations
from gigcx.escalation.packet import HandoffPacket, build_packet
from gigcx.escalation.redaction import redact

__all__ = ["ClaimRefused", "Escalations", "HandoffPacket", "build_packet", "redact"]
