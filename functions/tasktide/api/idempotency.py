"""``Idempotency-Key`` on the API's POST and PATCH (draft-ietf-httpapi-idempotency-key-header): a retried
write gets the first attempt's response and has no second effect (issue 12, finding 7).

Consumes a request to ``/api/{user}/...`` with method POST or PATCH, an ``Idempotency-Key`` header (an
sf-string ``"..."`` or a bare token, 1-255 visible ASCII characters) and a valid bearer token for that user
(keys are scoped per user; an unauthenticated request passes through untouched and the route refuses it,
so nobody can claim another user's key). Emits:

- first request with the key: runs; its response (any status below 500) is stored with the key before it
  is sent (so a client holding it can always replay it), and its commit marks the key in the SAME
  transaction as the effect (:mod:`tasktide.db.idempotency`);
- the same key and the same request again: the stored response, with ``Idempotent-Replayed: true``;
- the same key with another method, path, query or body: ``422`` problem;
- the same key while the first request is still running: ``409`` problem with ``Retry-After: 1``; also
  when the first one committed its effect but died before its response was stored (fetch the resource);
- a malformed key: ``400`` problem.

A request that fails with 5xx before committing anything releases its key, so the retry runs anew. Keys
expire after ``TASKTIDE_IDEMPOTENCY_RETENTION`` seconds (24 h) and are deleted by the retention sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasktide.api import problems
from tasktide.db.idempotency import CURRENT, Claim, IdempotencyStore, Pending
from tasktide.edges.bodyguard import collect_body

HEADER = b"idempotency-key"
METHODS = frozenset({"POST", "PATCH"})
_USER_PATH = re.compile(r"^/api/([^/]+)/")
_KEY = re.compile(r'^"?([\x21\x23-\x7e]{1,255})"?$')
_NOT_STORED = frozenset({"date", "server"})
MAX_STORED_BODY = 1024 * 1024


def _authorized(scope: Scope, user_id: str) -> bool:
    from tasktide.api.auth import authorize  # the routes' own check, so a key is only ever the user's

    try:
        authorize(Request(scope), user_id)
    except Exception:  # not this user's request: the route answers 401/403 itself, nothing is stored
        return False
    return True


def fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class IdempotencyKeys:
    """ASGI middleware (inside the body guard: bodies arrive whole and bounded)."""

    def __init__(self, app: ASGIApp, lock_seconds: float = 60.0) -> None:
        self.app, self.lock_seconds = app, lock_seconds
        self._stores: dict[int, IdempotencyStore] = {}

    def _store(self, scope: Scope) -> IdempotencyStore:
        services = scope["app"].state.services
        store = self._stores.get(id(services))
        if store is None:
            store = IdempotencyStore(
                services.sessions, services.settings.idempotency_retention, self.lock_seconds
            )
            self._stores[id(services)] = store
        return store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", []) if k == HEADER), None)
        match = _USER_PATH.match(scope.get("path", ""))
        if raw is None or match is None:
            await self.app(scope, receive, send)
            return
        parsed = _KEY.match(raw.decode("latin-1").strip())
        if parsed is None:
            detail = "Idempotency-Key must be a quoted string of 1 to 255 visible ASCII characters."
            await problems.problem_response(400, detail)(scope, receive, send)
            return
        user_id, key = match.group(1), parsed.group(1)
        if not await asyncio.to_thread(_authorized, scope, user_id):
            await self.app(scope, receive, send)
            return
        body = await collect_body(receive)
        store = self._store(scope)
        claim = await asyncio.to_thread(store.claim, user_id, key, fingerprint(scope, body))
        if claim.outcome != "new":
            await self._refuse_or_replay(claim, scope, receive, send)
            return
        await self._first(store, Pending(user_id, key), body, scope, send)

    async def _refuse_or_replay(self, claim: Claim, scope: Scope, receive: Receive, send: Send) -> None:
        if claim.outcome == "replay":
            headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in claim.headers or []]
            headers.append((b"idempotent-replayed", b"true"))
            await send({"type": "http.response.start", "status": claim.status or 200, "headers": headers})
            await send({"type": "http.response.body", "body": claim.body})
            return
        if claim.outcome == "mismatch":
            detail = (
                "This Idempotency-Key was used for another request (method, path or body); use a new key."
            )
            await problems.problem_response(422, detail)(scope, receive, send)
            return
        if claim.outcome == "committed":
            detail = (
                "A request with this Idempotency-Key was processed but its response was not recorded; "
                "read the resource instead of retrying."
            )
        else:
            detail = "A request with this Idempotency-Key is still being processed; retry shortly."
        await problems.problem_response(409, detail, headers={"Retry-After": "1"})(scope, receive, send)

    async def _first(
        self, store: IdempotencyStore, pending: Pending, body: bytes, scope: Scope, send: Send
    ) -> None:
        sent = False

        async def replay_body() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status, headers, chunks = 500, [], []
        held: list[Message] = []  # sent once the key holds the response: a client that has it can replay

        async def recording(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.decode("latin-1").lower() not in _NOT_STORED
                ]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            held.append(message)

        token = CURRENT.set(pending)
        try:
            await self.app(scope, replay_body, recording)
        except BaseException:
            if not pending.committed:
                await asyncio.to_thread(store.release, pending.user_id, pending.key)
            raise
        finally:
            CURRENT.reset(token)
        payload = b"".join(chunks)
        try:
            if status >= 500 and not pending.committed:
                await asyncio.to_thread(store.release, pending.user_id, pending.key)
            elif len(payload) <= MAX_STORED_BODY:
                await asyncio.to_thread(
                    store.complete, pending.user_id, pending.key, status, headers, payload
                )
        finally:  # before, a retry racing the store got 409 from a key whose answer the client already had
            for message in held:
                await send(message)
