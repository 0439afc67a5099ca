"""One provider client per provider and API root, made on first use and closed with the
process's node resources.

The SDKs' own retries are off (``max_retries=0``): a node's retry policy decides, so every
attempt shows up as a ``node.retry`` event and counts against ``limits.max_api_calls``. Their
HTTP clients (httpx2) connect through the egress policy, redirects included, and send the trace
context (:mod:`app.nodes.net.traced`).
"""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

import anthropic
import httpx2
import openai
from pydantic import SecretStr

from app.domain.ai_nodes import Provider
from app.errors import NodeConfigError
from app.nodes.net import egress, traced
from app.nodes.resources import NodeResources

Sdk = TypeVar("Sdk", openai.AsyncOpenAI, anthropic.AsyncAnthropic)

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_URL = "https://api.anthropic.com"
# What goes as the key where the deployment's key must not (a root other than the configured
# one) or need not (an OpenAI-compatible server of one's own: vLLM, llama.cpp, LM Studio): the
# SDKs insist on one.
NO_KEY = "no-key"
SDK_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)  # the SDKs' own


def configured_root(resources: NodeResources, provider: Provider) -> str:
    """The deployment's API root for ``provider`` (its setting, else the public API)."""
    settings = resources.settings
    root = {
        "openai": settings.openai_base_url or OPENAI_DEFAULT_URL,
        "anthropic": settings.anthropic_base_url or ANTHROPIC_DEFAULT_URL,
        "ollama": settings.ollama_url,
    }[provider]
    return root.rstrip("/")


def api_root(resources: NodeResources, provider: Provider, base_url: str | None) -> str:
    """Where calls to ``provider`` go: the node's ``base_url``, else the deployment's root."""
    return (base_url or configured_root(resources, provider)).rstrip("/")


def openai_client(
    resources: NodeResources, root: str, stored_key: str | None = None
) -> openai.AsyncOpenAI:
    """The client for the OpenAI(-compatible) API at ``root``, with a stored credential's key
    when the node names one, else the deployment's."""
    if stored_key is not None:
        name, key = f"openai:{root}:{_fingerprint(stored_key)}", stored_key
    else:
        secret = resources.settings.openai_api_key
        name, key = f"openai:{root}", _key(resources, "openai", root, secret, "OPENAI_API_KEY")
    return _sdk_client(resources, name, openai.AsyncOpenAI, key, root)


def anthropic_client(
    resources: NodeResources, root: str, stored_key: str | None = None
) -> anthropic.AsyncAnthropic:
    """The client for the Anthropic API at ``root`` (keys as :func:`openai_client`)."""
    if stored_key is not None:
        name, key = f"anthropic:{root}:{_fingerprint(stored_key)}", stored_key
    else:
        secret = resources.settings.anthropic_api_key
        key = _key(resources, "anthropic", root, secret, "ANTHROPIC_API_KEY")
        name = f"anthropic:{root}"
    # The SDK's own spans are off (and it reads no ANTHROPIC_OPEN_TELEMETRY* variable): every
    # provider's call is one ``chat`` span of Oxify's, content shown only as Oxify allows, and the
    # trace context goes with the HTTP span under it.
    no_spans = {"traces": False, "propagation": False}
    return _sdk_client(
        resources, name, anthropic.AsyncAnthropic, key, root, open_telemetry=no_spans
    )


def _fingerprint(key: str) -> str:
    """What names a stored key's client: a digest, so the name (which a log line may show)
    does not hold the key; a credential given a new value gets a client of its own."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _sdk_client(
    resources: NodeResources, name: str, sdk: type[Sdk], key: str, root: str, **options: Any
) -> Sdk:
    """One SDK client per provider and root, made on first use: its own retries off, bounded by
    ``OXIFY_LLM_TIMEOUT_S``, its connections through the egress policy (and no proxy from the
    environment: ``trust_env=False``)."""
    return resources.client(
        name,
        lambda: sdk(
            api_key=key,
            base_url=root,
            max_retries=0,
            timeout=resources.settings.llm_timeout_s,
            http_client=httpx2.AsyncClient(
                transport=_transport(resources),
                trust_env=False,
                timeout=resources.settings.llm_timeout_s,
                follow_redirects=True,
            ),
            **options,
        ),
        close=sdk.close,
    )


def secrets_of(resources: NodeResources) -> list[str]:
    """The provider keys this process holds: text that must never leave it but to a provider."""
    settings = resources.settings
    keys = (settings.openai_api_key, settings.anthropic_api_key)
    return [k.get_secret_value() for k in keys if k is not None and k.get_secret_value()]


def _transport(resources: NodeResources) -> httpx2.AsyncBaseTransport:
    """Connections through the egress policy, for the SDKs' HTTP client; each request a
    client span carrying the trace context."""
    return traced.Traced2(egress.sdk_transport(resources.egress, SDK_LIMITS))


def _key(
    resources: NodeResources,
    provider: Provider,
    root: str,
    secret: SecretStr | None,
    variable: str,
) -> str:
    """The deployment's key, for the deployment's own root only: a workflow that names another
    ``base_url`` (it may come from a run's inputs) must not receive the key."""
    if root != configured_root(resources, provider):
        return NO_KEY
    if secret is not None and secret.get_secret_value():
        return secret.get_secret_value()
    if root in (OPENAI_DEFAULT_URL, ANTHROPIC_DEFAULT_URL):
        raise NodeConfigError(f"{variable} is not set: the provider's API needs a key")
    return NO_KEY
