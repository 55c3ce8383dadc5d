"""Conversations of the chat agent in the `StateStore` port (Dapr state store on a cluster, SQL embedded).

Consumes: a `StateStore`. Emits: `Conversation` records under `chat:<user>:<id>` (JSON: the Agents SDK's
input items), written with the etag read, so two replicas never silently overwrite one another.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tasktide.dapr import StateStore

TTL_SECONDS = 30 * 24 * 3600


@dataclass
class Conversation:
    id: str
    user_id: str
    items: list[Any] = field(default_factory=list)
    etag: str | None = None


def key(user_id: str, conversation_id: str) -> str:
    return f"chat:{user_id}:{conversation_id}"


class ConversationStore:
    def __init__(self, state: StateStore) -> None:
        self.state = state

    def new(self, user_id: str) -> Conversation:
        return Conversation(uuid.uuid4().hex, user_id)

    def load(self, user_id: str, conversation_id: str) -> Conversation | None:
        item = self.state.get(key(user_id, conversation_id))
        if item is None:
            return None
        items = json.loads(item.value).get("items", [])
        return Conversation(conversation_id, user_id, list(items), item.etag)

    def save(self, conversation: Conversation) -> None:
        """Raises `EtagMismatch` if someone else saved the conversation since it was loaded."""
        value = json.dumps({"items": conversation.items}, default=str).encode()
        conversation.etag = self.state.put(
            key(conversation.user_id, conversation.id), value, etag=conversation.etag, ttl_seconds=TTL_SECONDS
        )
