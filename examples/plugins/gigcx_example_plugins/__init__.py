"""Example gigcx plugins (see README.md): the `opening_hours` answerer and the
`handoff_webhook` expert channel."""
