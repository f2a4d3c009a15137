"""The web edge: the chat API (HTTP + WebSocket) that the widget talks to, and the
endpoints of the enabled channels."""

from gigcx.connectors.web.server import app_from_environment, create_app

__all__ = ["app_from_environment", "create_app"]
