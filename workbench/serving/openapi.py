"""The OpenAPI document of a running service, built from the model it serves (so the documented
request fields are the ones the current version needs, also after a hot reload)."""

from __future__ import annotations

from typing import Any

from .protocol import ERROR_STATUS, FORMAT_DATAFRAME_RECORDS, FORMAT_DATAFRAME_SPLIT, TENSOR_FORMATS

__all__ = ["build"]


def build(service) -> dict[str, Any]:
    contract = service.contract
    record = contract.json_schema() if contract is not None else {"type": "object"}
    versions = {n: (v.model.version if v.model else None) for n, v in service.variants.items()}
    error = {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {"type": "string", "enum": sorted(ERROR_STATUS)},
            "message": {"type": "string"},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "field": {"type": "string"},
                        "expected": {"type": "string"},
                        "found": {"type": "string", "description": "The kind of what was found, never the value."},
                        "rows": {"type": "array", "items": {"type": "integer"}},
                        "count": {"type": "integer"},
                    },
                },
            },
        },
    }
    answer = {
        "type": "object",
        "properties": {
            "request_id": {"type": "string"},
            "entity_id": {"type": ["string", "null"]},
            "prediction": {
                "type": "number",
                "description": "P(positive class) for a classifier, else the predicted value.",
            },
            "label": {"type": "integer"},
            "model_version": {
                "type": "string",
                "description": "The version that answered ('constant' for a constant fallback).",
            },
            "variant": {"type": "string"},
            "fallback": {"type": "boolean"},
            "fallback_reason": {"type": "string"},
            "out_of_domain": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Columns outside the trained domain (served anyway).",
            },
        },
    }
    limits = service.options.limits
    markers = [FORMAT_DATAFRAME_SPLIT, FORMAT_DATAFRAME_RECORDS, *TENSOR_FORMATS]
    many = {
        "type": "array",
        "minItems": 1,
        "maxItems": limits.max_rows,
        "items": {"$ref": "#/components/schemas/Record"},
    }
    required = list(contract.columns) if contract is not None else []
    body = {
        "oneOf": [
            # one record: a key naming a format would make it that format
            {
                "allOf": [
                    {"$ref": "#/components/schemas/Record"},
                    {"not": {"anyOf": [{"required": [m]} for m in markers]}},
                ]
            },
            many,
            {
                "type": "object",
                "required": [FORMAT_DATAFRAME_SPLIT],
                "additionalProperties": False,
                "properties": {
                    "params": {},
                    FORMAT_DATAFRAME_SPLIT: {
                        "type": "object",
                        "required": ["columns", "data"],
                        "description": "The columns in this order (request_id and entity_id may be added as "
                        "further columns); each row of 'data' one value per column.",
                        "properties": {
                            "columns": {"const": required},
                            "data": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": limits.max_rows,
                                "items": {
                                    "type": "array",
                                    "minItems": len(required),
                                    "maxItems": len(required),
                                    "prefixItems": [record.get("properties", {}).get(c, {}) for c in required],
                                },
                            },
                        },
                    },
                },
            },
            {
                "type": "object",
                "required": [FORMAT_DATAFRAME_RECORDS],
                "additionalProperties": False,
                "properties": {"params": {}, FORMAT_DATAFRAME_RECORDS: many},
            },
        ]
    }
    errors = {
        str(status): {
            "description": ", ".join(sorted(c for c, s in ERROR_STATUS.items() if s == status)),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in sorted(set(ERROR_STATUS.values()))
    }

    def predict_op(summary: str, response_schema: dict) -> dict:
        return {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "Predictions", "content": {"application/json": {"schema": response_schema}}},
                **errors,
            },
        }

    document = {
        "openapi": "3.1.0",
        "info": {
            "title": f"workbench serve: {service.options.model_name}",
            "version": str(versions),
            "description": "Predictions from the registered model behind the aliases listed in /readyz. "
            "Send the raw columns the model's feature function needs; the service decorates them.",
        },
        "paths": {
            "/predict": {
                "post": predict_op(
                    "Predict one or many records",
                    {
                        "type": "object",
                        "properties": {
                            "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Answer"}},
                            "warnings": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                )
            },
            "/invocations": {
                "post": predict_op(
                    "MLflow-compatible scoring",
                    {
                        "type": "object",
                        "properties": {
                            "predictions": {"type": "array"},
                            "workbench": {"type": "array", "items": {"$ref": "#/components/schemas/Answer"}},
                        },
                    },
                )
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "The process is alive"}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: the primary model is loaded",
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text/plain exposition"}}}
            },
        },
        "components": {"schemas": {"Record": record, "Answer": answer, "Error": error}},
    }
    if getattr(service, "experiment", None) is not None:
        document["paths"]["/feedback"] = {"post": _feedback_op()}
    return document


def _feedback_op() -> dict:
    """POST /feedback (with --feedback or --bandit): rewards for answered request ids (`feedback.py`)."""
    item = {
        "type": "object",
        "required": ["request_id", "reward"],
        "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._:\\-]{1,128}$"},
            "reward": {"oneOf": [{"type": "number"}, {"type": "boolean"}]},
            "variant": {"type": "string", "description": "optional: the variant that answered"},
        },
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "summary": "Rewards for answered requests (each request_id once); a batch with a problem is refused whole",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [item, {"type": "array", "items": item}]}}},
        },
        "responses": {
            "200": {"description": "Stored (fsynced); the experiment's state after it"},
            "400": {"description": "MALFORMED_JSON, EMPTY_BODY, BAD_REQUEST", **error},
            "404": {"description": "UNKNOWN_REQUEST_ID", **error},
            "409": {"description": "ALREADY_REWARDED", **error},
            "413": {"description": "PAYLOAD_TOO_LARGE", **error},
            "415": {"description": "UNSUPPORTED_MEDIA_TYPE", **error},
            "422": {"description": "FEEDBACK_INVALID and the problem codes per item", **error},
        },
    }
