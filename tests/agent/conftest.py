"""Fixtures of the agent tests: the scripted OpenAI-protocol model server."""

from tests.agent.fakemodel import model

__all__ = ["model"]
