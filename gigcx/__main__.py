"""`python -m gigcx` is the `gigcx` command."""

from gigcx.cli import app

app()
