"""What verifying an OIDC bearer token costs a request: ``await verifier.principal(token)`` with
the provider's key cached (target p50 ≤ 150 µs for RS256), beside PyJWT's bare ``jwt.decode``
with the same key (the signature check and claim checks, no lookup, no mapping).

The provider is the tests' real JWKS server on a loopback port; the first call fetches the keys,
the timed ones never touch the network. Tokens are distinct (another ``sub`` each) so nothing
is cached per token. ``python -m bench.auth_oidc [CALLS]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass

import jwt

from app.auth.oidc import OidcVerifier
from app.settings_oidc import OidcSettings
from tests.integration.oidc_server import provider
from tests.oidc_keys import AUDIENCE, claims, signer

CALLS = 5000
WARMUP = 200
ALGORITHMS = ("RS256", "ES256", "EdDSA")


@dataclass(frozen=True)
class Timing:
    algorithm: str
    p50_us: float
    p99_us: float
    bare_p50_us: float  # jwt.decode alone


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples_ns, n=100)
    return cuts[49] / 1000, cuts[98] / 1000


async def measure(algorithm: str, calls: int = CALLS) -> Timing:
    """p50 and p99 of ``principal(token)`` with the key cached, in microseconds."""
    key = signer(f"bench-{algorithm}", algorithm)
    async with provider(key) as idp:
        settings = OidcSettings(oidc_issuer=idp.issuer, oidc_audience=AUDIENCE)
        verifier = OidcVerifier.from_settings(settings)
        try:
            tokens = [key.sign(claims(idp.issuer, sub=f"u{n}")) for n in range(calls + WARMUP)]
            for token in tokens[:WARMUP]:
                await verifier.principal(token)
            samples = []
            for token in tokens[WARMUP:]:
                started = time.perf_counter_ns()
                await verifier.principal(token)
                samples.append(time.perf_counter_ns() - started)
            public = await verifier.keys.key(key.kid, algorithm)
            bare = []
            for token in tokens[WARMUP:]:
                started = time.perf_counter_ns()
                jwt.decode(token, public, algorithms=[algorithm], audience=AUDIENCE)
                bare.append(time.perf_counter_ns() - started)
        finally:
            await verifier.aclose()
    p50, p99 = _percentiles(samples)
    return Timing(algorithm, p50, p99, _percentiles(bare)[0])


async def main(calls: int) -> None:
    print(f"OIDC token verification, key cached, {calls} distinct tokens each")
    print(f"{'algorithm':<10}{'p50 µs':>10}{'p99 µs':>10}{'jwt.decode p50 µs':>20}")
    for algorithm in ALGORITHMS:
        timing = await measure(algorithm, calls)
        print(
            f"{timing.algorithm:<10}{timing.p50_us:>10.1f}{timing.p99_us:>10.1f}"
            f"{timing.bare_p50_us:>20.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else CALLS))
