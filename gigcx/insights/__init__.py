"""What brand teams read: the overview report, knowledge gaps (escalated and low-rated
questions grouped by meaning) and knowledge drafts made from expert answers.

Reads the store the server writes and the knowledge's embedder; used by `/admin` and the CLI.
"""
