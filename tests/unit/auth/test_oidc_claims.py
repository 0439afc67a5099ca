"""What a valid token grants: scopes from the configured claim (a string or a list), the
project from its claim (default, or every project for an admin), and who it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.auth.jwks import JwksCache
from app.auth.oidc import OidcVerifier
from app.auth.principal import DEFAULT_PROJECT
from app.auth.scopes import Scope
from app.errors import Unauthenticated
from tests.oidc_keys import AUDIENCE, claims, jwks, signer

ISSUER = "https://login.example.com/realms/oxify"
RSA = signer("rsa-1")
EC = signer("ec-1", "ES256")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    def idp(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks(RSA, EC))

    async with httpx.AsyncClient(transport=httpx.MockTransport(idp)) as made:
        yield made


async def verify(client: httpx.AsyncClient, token_claims: dict[str, Any], **config: Any) -> Any:
    keys = JwksCache(issuer=ISSUER, jwks_url=ISSUER + "/certs", client=client)
    verifier = OidcVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, **config)
    try:
        return await verifier.principal(RSA.sign(token_claims))
    finally:
        await verifier.aclose()


@pytest.mark.parametrize(
    ("scope_claim", "value", "scopes"),
    [
        ("scope", "openid runner viewer", {Scope.RUNNER, Scope.VIEWER}),
        ("scope", "  reviewer\tprofile ", {Scope.REVIEWER}),
        ("scope", "openid email", set()),
        ("scope", None, set()),
        ("scope", 42, set()),
        ("permissions", ["admin", "read:everything", 7, {"x": 1}], {Scope.ADMIN}),
        ("roles", ["viewer", "viewer", "Runner"], {Scope.VIEWER}),
        ("realm_access.roles", {"roles": ["reviewer", "offline_access"]}, {Scope.REVIEWER}),
    ],
)
async def test_scopes_are_the_known_names_in_the_claim(
    client: httpx.AsyncClient, scope_claim: str, value: Any, scopes: set[Scope]
) -> None:
    token_claims = claims(ISSUER, **{"scope": None, scope_claim.split(".")[0]: value})
    caller = await verify(client, token_claims, scope_claim=scope_claim)
    assert caller.scopes == scopes


async def test_a_dotted_claim_name_that_is_itself_a_claim_wins(client: httpx.AsyncClient) -> None:
    token_claims = claims(ISSUER, **{"https://oxify.example/roles": ["admin"]})
    caller = await verify(client, token_claims, scope_claim="https://oxify.example/roles")
    assert caller.scopes == {Scope.ADMIN}


@pytest.mark.parametrize(
    ("scope", "project", "seen"),
    [
        ("runner", "team-a", "team-a"),
        ("runner", None, DEFAULT_PROJECT),
        ("viewer admin", None, None),  # an admin without a project sees every project
        ("admin", "team-a", "team-a"),
    ],
)
async def test_the_project_claim_confines_the_caller(
    client: httpx.AsyncClient, scope: str, project: str | None, seen: str | None
) -> None:
    caller = await verify(client, claims(ISSUER, scope=scope, oxify_project=project))
    assert caller.project == seen


async def test_the_project_claim_is_configurable_and_must_be_a_name(
    client: httpx.AsyncClient,
) -> None:
    token_claims = claims(ISSUER, tenant="team-b", oxify_project="ignored")
    assert (await verify(client, token_claims, project_claim="tenant")).project == "team-b"
    for bad in (["team-a"], "", 3):
        with pytest.raises(Unauthenticated, match="oxify_project claim must be a project name"):
            await verify(client, claims(ISSUER, oxify_project=bad))


async def test_the_caller_is_named_by_subject_and_username(client: httpx.AsyncClient) -> None:
    caller = await verify(client, claims(ISSUER, sub="u-7", preferred_username="ada"))
    assert (caller.subject, caller.name, caller.actor) == ("u-7", "ada", "sub:u-7")
    assert (await verify(client, claims(ISSUER, email="ada@example.com"))).name == (
        "ada@example.com"
    )
    assert (await verify(client, claims(ISSUER))).name is None


async def test_the_person_is_the_subject_and_the_groups_come_from_their_claim(
    client: httpx.AsyncClient,
) -> None:
    caller = await verify(client, claims(ISSUER, sub="u-7", groups=["ops", "", 3, "legal"]))
    assert (caller.person, caller.groups) == ("u-7", {"ops", "legal"})
    token_claims = claims(ISSUER, realm={"teams": "ops sre"})
    assert (await verify(client, token_claims, groups_claim="realm.teams")).groups == {
        "ops",
        "sre",
    }
    assert (await verify(client, claims(ISSUER, groups="not-a-list-of-one"))).groups == {
        "not-a-list-of-one"
    }
    assert (await verify(client, claims(ISSUER, groups={"ops": True}))).groups == set()


async def test_only_the_configured_algorithms_are_accepted(client: httpx.AsyncClient) -> None:
    with pytest.raises(Unauthenticated, match=r"not accepted \(accepted: ES256\)"):
        await verify(client, claims(ISSUER), algorithms=["ES256"])
    keys = JwksCache(issuer=ISSUER, client=client)
    for refused in (["HS256"], ["RS256", "none"], []):
        with pytest.raises(ValueError, match="only asymmetric algorithms"):
            OidcVerifier(issuer=ISSUER, audience=AUDIENCE, keys=keys, algorithms=refused)
