"""The edges: web (FastAPI, WebSocket, widget), Slack (slack-bolt), Rasa import."""
