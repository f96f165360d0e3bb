"""OpenAPI 3.1 from the route table and the Pydantic models the handlers use."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from handlers.base import ApiHandler
from handlers.policy import Operation

PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "request_id": {"type": "string"},
    },
    "required": ["type", "title", "status", "code"],
}


def build_openapi(routes: list[tuple[str, type[ApiHandler]]]) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for _, handler in routes:
        for op in handler.openapi.values():
            models.update(m for m in (op.body, op.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema(
        [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
    )
    schemas = defs.get("$defs", {})
    schemas["Problem"] = PROBLEM

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, Any] = {}
    for path, handler in routes:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
        for verb, op in handler.openapi.items():
            paths.setdefault(path, {})[verb] = _operation(op, params, ref, handler)
    return {
        "openapi": "3.1.0",
        "info": {"title": "家长学校 API", "version": "1.0.0"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "paths": paths,
    }


def _operation(
    op: Operation, params: list[dict[str, Any]], ref: Any, handler: type[ApiHandler]
) -> dict[str, Any]:
    parameters = list(params)
    if op.query is not None:
        for name, field in op.query.model_fields.items():
            parameters.append({"name": name, "in": "query", "required": field.is_required(), "schema": {}})
    if op.idempotent:
        parameters.append(
            {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}}
        )
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "OK"}
    if op.response is not None:
        ok["content"] = {"application/json": {"schema": ref(op.response)}}
    responses[str(op.status)] = ok
    for status in op.errors:
        responses[str(status)] = {
            "description": "problem",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    result: dict[str, Any] = {"summary": op.summary, "parameters": parameters, "responses": responses}
    if op.body is not None:
        result["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(op.body)}}}
    if op.authenticated:
        result["security"] = [{"bearer": []}]
    if op.roles:
        result["x-roles"] = sorted(r.value for r in op.roles)
    result["x-scope"] = op.scope.value
    if op.audit is not None:
        result["x-audit"] = op.audit.value
    if not op.records_identity:
        result["x-records-identity"] = False
    return result
