"""HTTP API, WebSocket and the live web page (FastAPI)."""
