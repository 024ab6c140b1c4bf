"""The OpenAPI schema, made to say what the service really does with this configuration.

FastAPI's own document is close but not exact, and clients generated from it (openapi-generator and the
like) trust every word: error bodies are JSON `ErrorBody` on every route (also where the success is text,
an event stream, or where FastAPI would describe its own `HTTPValidationError`), the configured length
limits and git's ref rules are stated where they apply, and each error status says what it means.
tests/api/test_openapi_contract.py holds the document against the routes' real answers.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from ..providers.git.provider import REF_PATTERN

__all__ = ["install"]

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
# FastAPI's placeholders (or the status's name), replaced by what the status means here.
_DEFAULT_DESCRIPTIONS = {"Additional Response", "Validation Error"}
_MEANS = {
    400: "A request the service refuses for what it says (`invalid_spec`, `invalid_request`)",
    401: "No token, or an invalid one (`unauthorized`)",
    403: "Not allowed: the token's scopes, a banned or disallowed repository, another user's build or "
    "image (`forbidden`, `repo_not_allowed`, `repo_banned`, `destination_not_allowed`)",
    404: "Not found (`not_found`, `build_not_found`, `image_not_found`)",
    409: "In a state that refuses this (`image_shared`: other users asked for it; `no_registry`)",
    413: "A request body, or a request line and headers, over 64 KiB (`input_too_large`)",
    422: "The request does not match this document (`invalid_request`): a missing or mistyped field, or "
    "a value past its length limit or outside its pattern",
    429: "Past a per-user limit (`too_many_requests`)",
    502: "An upstream service answered wrongly (`upstream_error`)",
    503: "A dependency does not answer (`hub_unavailable`, `store_unavailable`, `registry_unavailable`, "
    "`engine_unavailable`, `service_stopping`)",
    504: "An upstream service did not answer in time (`upstream_timeout`)",
}


def install(app: FastAPI, *, max_input_length: int) -> None:
    """Serve FastAPI's schema corrected as the module says, with the configured input limits."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _corrected(FastAPI.openapi(app), max_input_length)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _corrected(schema: dict[str, Any], max_input_length: int) -> dict[str, Any]:
    fields = schema["components"]["schemas"]["BuildCreate"]["properties"]
    for name in ("repo", "ref"):  # enforced by api/models.check_create: 422 past it
        fields[name]["maxLength"] = max_input_length
    fields["ref"]["pattern"] = REF_PATTERN
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            if path.endswith("/build/{provider}/{spec}"):
                # Its only query parameter is a plain string: nothing it takes fails validation.
                responses.pop("422", None)
            for status, response in responses.items():
                if not status.isdigit() or int(status) < 400:
                    continue
                content = response.get("content", {})
                if status == "422" or "application/json" not in content:
                    # The error handlers (api/errors.py) answer JSON, whatever the route's own type.
                    response["content"] = {"application/json": {"schema": ERROR_BODY}}
                if response.get("description") in {*_DEFAULT_DESCRIPTIONS, HTTPStatus(int(status)).phrase}:
                    response["description"] = _MEANS.get(int(status), "An error (see `code`)")
    text = json.dumps(schema["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in text:
            schema["components"]["schemas"].pop(unused, None)
    return schema
