"""Sender tokens on the event path: what the local router signs, what a function accepts (issue 12, #1).

Consumes :mod:`tasktide.edges.senderauth` directly (tokens, verifier, the ASGI guard) and a JWKS file for
the cluster's RS256 service-account tokens. Pure: no network, no database.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tasktide.edges import senderauth
from tasktide.edges.senderauth import JwksKeys, SenderAuth, SenderRejected, Signer, Verifier

KEY = "local-router-key-0123456789abcdef0123"
AUDIENCE = senderauth.service_audience("tasktide-notifier", "tasktide")
TRIGGER_SUB = "system:serviceaccount:tasktide:notifier-oidc-eventing.knative.dev-trigger"


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture(autouse=True)
def no_signer() -> Iterator[None]:
    yield
    senderauth.install_signer(None)


def test_senderauth_service_audience_is_knatives_format() -> None:
    assert AUDIENCE == "serving.knative.dev/service/tasktide/tasktide-notifier"


def test_senderauth_router_token_verifies_for_its_audience() -> None:
    claims = Verifier(AUDIENCE, (KEY,)).verify(bearer(senderauth.sign(KEY, AUDIENCE)))
    assert claims["aud"] == AUDIENCE and claims["iss"] == senderauth.LOCAL_ISSUER


# Each case builds its header when the test runs, not at collection: a token signed at collection time
# can expire (LOCAL_TTL) before a slow suite reaches the case, and then fails for the wrong reason.
@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (lambda: None, "missing sender token"),
        (lambda: "", "missing sender token"),
        (lambda: "Basic dXNlcjpwYXNz", "missing sender token"),
        (lambda: "Bearer not-a-jwt", "malformed token"),
        (
            lambda: bearer(senderauth.sign(KEY, senderauth.service_audience("tasktide-audit", "tasktide"))),
            "audience",
        ),
        (lambda: bearer(senderauth.sign("another-key-0123456789abcdef012345", AUDIENCE)), "signature"),
        (lambda: bearer(senderauth.sign(KEY, AUDIENCE, now=time.time() - 3600)), "expired"),
        (
            lambda: bearer(jwt.encode({"aud": AUDIENCE, "sub": "x", "exp": time.time() + 60}, None, "none")),
            "algorithm",
        ),
    ],
    ids=["absent", "empty", "basic", "garbage", "other-audience", "other-key", "expired", "alg-none"],
)
def test_senderauth_bad_token_rejected_with_reason(header: Callable[[], str | None], reason: str) -> None:
    with pytest.raises(SenderRejected, match=reason):
        Verifier(AUDIENCE, (KEY,)).verify(header())


def test_senderauth_rotated_keys_all_verify() -> None:
    verifier = Verifier(AUDIENCE, senderauth.split_keys(f"new-key-0123456789abcdef0123456789, {KEY}"))
    assert verifier.verify(bearer(senderauth.sign(KEY, AUDIENCE)))["aud"] == AUDIENCE


def test_senderauth_subjects_restrict_senders() -> None:
    verifier = Verifier(AUDIENCE, (KEY,), subjects=("system:serviceaccount:tasktide:notifier-oidc-*",))
    assert verifier.verify(bearer(senderauth.sign(KEY, AUDIENCE, subject=TRIGGER_SUB)))
    with pytest.raises(SenderRejected, match="not allowed"):
        verifier.verify(
            bearer(senderauth.sign(KEY, AUDIENCE, subject="system:serviceaccount:tasktide:tasktide"))
        )


def test_senderauth_cluster_rs256_token_verifies_against_jwks(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    issuer = "https://kubernetes.default.svc.cluster.local"
    now = int(time.time())
    claims = {"iss": issuer, "sub": TRIGGER_SUB, "aud": [AUDIENCE], "iat": now, "exp": now + 3600}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    keys = JwksKeys(jwks.as_uri(), token_file=tmp_path / "none", ca_file=tmp_path / "none")
    verifier = Verifier(AUDIENCE, jwks=keys, issuer=issuer, subjects=(TRIGGER_SUB,))
    assert verifier.verify(bearer(token))["sub"] == TRIGGER_SUB
    with pytest.raises(SenderRejected, match="issuer"):
        Verifier(AUDIENCE, jwks=keys, issuer="https://elsewhere").verify(bearer(token))
    forged = jwt.encode(claims, KEY, algorithm="HS256")  # HMAC with no HMAC key configured: refused
    with pytest.raises(SenderRejected, match="algorithm"):
        verifier.verify(bearer(forged))


def test_senderauth_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError, match="TASKTIDE_EVENT_SIGNING_KEY"):
        Verifier(AUDIENCE)


def test_senderauth_signer_signs_only_function_paths() -> None:
    senderauth.install_signer(Signer(KEY, {"/services/tasktide-notifier": AUDIENCE}))
    headers = senderauth.outgoing_headers("http://127.0.0.1:8080/services/tasktide-notifier")
    assert Verifier(AUDIENCE, (KEY,)).verify(headers["Authorization"])["aud"] == AUDIENCE
    assert senderauth.outgoing_headers("https://hooks.example.com/services/tasktide-audit") == {}
    senderauth.install_signer(None)
    assert senderauth.outgoing_headers("http://127.0.0.1:8080/services/tasktide-notifier") == {}


def test_senderauth_signer_reuses_a_token_until_half_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(senderauth.time, "time", lambda: now[0])
    signer = Signer(KEY, {"/services/tasktide-notifier": AUDIENCE}, ttl=300)
    first = signer.token(AUDIENCE)
    now[0] += 149
    assert signer.token(AUDIENCE) == first
    now[0] += 2
    renewed = signer.token(AUDIENCE)
    assert renewed != first
    claims = jwt.decode(renewed, KEY, ["HS256"], audience=AUDIENCE, options={"verify_exp": False})
    assert claims["exp"] == int(now[0]) + 300


def test_senderauth_verifier_remembers_a_verified_token_never_past_its_exp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = Verifier(AUDIENCE, (KEY,))
    token = bearer(senderauth.sign(KEY, AUDIENCE, ttl=10))
    decoded: list[str] = []
    real = senderauth.jwt.decode
    monkeypatch.setattr(senderauth.jwt, "decode", lambda *a, **k: decoded.append("x") or real(*a, **k))
    verifier.verify(token)
    verifier.verify(token)
    assert decoded == ["x"]  # the second call trusted the first's result
    later = time.time() + 11
    monkeypatch.setattr(senderauth.time, "time", lambda: later)
    verifier.verify(token)  # past the token's exp: decoded again (PyJWT's own clock judges it)
    assert decoded == ["x", "x"]


async def _echo(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Route("/", _echo, methods=["GET", "POST"])])
    transport = httpx.ASGITransport(app=SenderAuth(app, Verifier(AUDIENCE, (KEY,))))
    async with httpx.AsyncClient(transport=transport, base_url="http://fn") as client:
        yield client


@pytest.mark.anyio
async def test_senderauth_asgi_post_without_token_answers_401_problem(guarded: httpx.AsyncClient) -> None:
    response = await guarded.post("/", content=b"{}")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


@pytest.mark.anyio
async def test_senderauth_asgi_post_with_token_and_get_pass(guarded: httpx.AsyncClient) -> None:
    token = senderauth.sign(KEY, AUDIENCE)
    assert (
        await guarded.post("/", content=b"{}", headers={"Authorization": bearer(token)})
    ).status_code == 204
    assert (await guarded.get("/")).status_code == 204  # probes and scrapes need no token
