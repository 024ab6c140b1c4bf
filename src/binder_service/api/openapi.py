"""The OpenAPI schema, made to say what the service really does with this configuration."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["install"]


def install(app: FastAPI, *, max_input_length: int) -> None:
    """Serve FastAPI's schema with the configured input limits, and without responses that cannot occur."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            fields = schema["components"]["schemas"]["BuildCreate"]["properties"]
            for name in ("repo", "ref"):  # the providers answer 413 past it
                fields[name]["maxLength"] = max_input_length
            for path, operations in schema["paths"].items():
                if path.endswith("/build/{provider}/{spec}"):
                    # Its only query parameter is a plain string: nothing it takes fails validation.
                    operations["get"]["responses"].pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
