"""ASGI hosting shared by the API and the function servers: the request-body guard."""
