"""The edges, one folder per channel: web (the chat API, its WebSocket, the widget and the
expert console) and slack (experts in Slack, through slack-bolt)."""
