"""The web edge: the chat API (HTTP + WebSocket) that the widget talks to."""

from gigcx.connectors.web.app import create_app

__all__ = ["create_app"]
