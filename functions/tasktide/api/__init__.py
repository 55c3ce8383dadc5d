"""The task REST API (FastAPI)."""
