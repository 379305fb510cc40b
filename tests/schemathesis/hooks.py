"""Schemathesis hooks for abacsync's API (loaded by scripts/schemathesis.sh).

Plugin uploads take the component itself (`application/wasm`), which schemathesis has
no serializer for: generated values are sent as their bytes, so uploads of garbage are
tried too (the API must answer them 422, never 5xx).
"""

import schemathesis


@schemathesis.serializer("application/wasm")
def wasm(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
