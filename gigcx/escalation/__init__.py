"""Expert pool, routing, claim/SLA state machine, handover packet, resolution ledger (issue 5)."""
