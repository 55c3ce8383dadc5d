"""Bearer JWT (HS256) auth: `sub` must equal the `{user_id}` in the path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
from fastapi import Depends, Path, Request

from tasktide.api.problems import Problem

ALGORITHM = "HS256"
UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")]


def encode_token(user_id: str, secret: str, ttl: timedelta = timedelta(hours=24)) -> str:
    now = datetime.now(UTC)
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl}, secret, algorithm=ALGORITHM)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if not header and request.url.path.endswith("/stream") and request.query_params.get("access_token"):
        header = "Bearer " + request.query_params["access_token"]  # EventSource cannot set headers
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Send 'Authorization: Bearer <token>'; mint one with `tasktide token USER_ID`.")
    return token.strip()


def authorize(request: Request, user_id: UserId) -> str:
    """The authenticated user, who must be the one named in the path."""
    secret: str = request.app.state.services.jwt_secret
    try:
        claims = jwt.decode(
            _bearer(request), secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Problem(401, "The token has expired; mint a new one.") from None
    except jwt.InvalidSignatureError:
        raise Problem(
            401,
            "The token's signature does not match this server's JWT secret: mint it with the secret the "
            "server uses (`TASKTIDE_JWT_SECRET=<the server's secret> tasktide token USER_ID`).",
        ) from None
    except jwt.DecodeError:
        raise Problem(
            401,
            "The bearer token is not a JWT (three base64url parts separated by dots); "
            "mint one with `tasktide token USER_ID`.",
        ) from None
    except jwt.InvalidTokenError as exc:
        raise Problem(401, f"The token is invalid: {exc}.") from None
    if claims.get("sub") != user_id:
        raise Problem(403, "The token belongs to another user.")
    return user_id


CurrentUser = Annotated[str, Depends(authorize)]
