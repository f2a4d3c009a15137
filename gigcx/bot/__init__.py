"""The front line: retrieval-grounded answers and the decision to escalate (issue 3)."""
