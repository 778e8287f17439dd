"""The request fields that ask for structured output, each read into a checked GuidedDecoding, and what
/openapi.json says about them. guided_request.py lets a request have at most one.

  structured_outputs   vLLM >= 0.12: {"json" | "regex" | "choice" | "grammar" | "json_object": ...} plus options
  guided_json / guided_regex / guided_choice / guided_grammar
                       the same constraints under vLLM's older, deprecated names (still accepted)

Every key is honoured or refused with a 400 that names it; none is silently ignored. What vdeploy cannot honour:
a whitespace pattern (`whitespace_pattern`, `guided_whitespace_pattern`: JSON is always generated compactly, see
engine/guided.py) and `structural_tag`.
"""

from __future__ import annotations

import json
from typing import Any

from vdeploy.engine.sampling_params import GuidedDecoding
from vdeploy.server.errors import APIError, invalid_param

# the deprecated top-level field -> the constraint it asks for (the order decides which one a conflict error names)
LEGACY_FIELDS = {"guided_json": "json", "guided_regex": "regex", "guided_grammar": "grammar",
                 "guided_choice": "choice"}
# structured_outputs keys that are constraints (vLLM allows one of them, as vdeploy allows one per request)
CONSTRAINT_KEYS = ("json", "regex", "choice", "grammar", "json_object")
# structured_outputs options whose every value is already what vdeploy does
NEUTRAL_OPTIONS = {
    # JSON is compiled without free whitespace (engine/guided.py): what true asks; false only permits whitespace
    "disable_any_whitespace",
    # schemas are compiled strictly, properties a schema does not list are never generated: what true asks of
    # vLLM's guidance backend (its xgrammar backend, like vdeploy's, ignores the option)
    "disable_additional_properties",
    # one grammar backend: there is nothing to fall back to
    "disable_fallback",
}
# structured_outputs options vdeploy cannot honour -> why (the 400's message)
REFUSED_OPTIONS = {
    "whitespace_pattern": "JSON is generated without whitespace between tokens, so a whitespace pattern cannot apply",
    "structural_tag": "structural tags are not supported by this server",
}


def constraint(kind: str, value: Any, param: str) -> GuidedDecoding:
    """One constraint, checked: every spelling of it (structured_outputs.KIND, guided_KIND, response_format) comes
    here. `param` is the field the 400 names."""
    if kind == "json":
        schema = value
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except ValueError:
                raise invalid_param(f"{param} is not valid JSON", param, code="invalid_json") from None
        if not isinstance(schema, dict):
            raise invalid_param(f"{param} must be a JSON schema object", param)
        return GuidedDecoding(json=json.dumps(schema))
    if kind in ("regex", "grammar"):
        if not isinstance(value, str) or not value:
            raise invalid_param(f"{param} must be a non-empty string", param)
        return GuidedDecoding(**{kind: value})
    if kind == "choice":
        if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
            raise invalid_param(f"{param} must be a non-empty list of strings", param)
        return GuidedDecoding(choice=value)
    if kind == "json_object":
        # vLLM compiles a JSON-object grammar for any non-null value, false included: refused rather than guessed
        if value is not True:
            raise invalid_param(f"{param} must be true (leave it out for no constraint)", param)
        return GuidedDecoding(json_object=True)
    raise ValueError(f"unknown constraint kind {kind!r}")


def _unsupported(param: str, why: str) -> APIError:
    return invalid_param(f"{param} is not supported: {why}", param, code="unsupported_value")


def requested_constraints(extra: dict[str, Any]) -> list[tuple[str, GuidedDecoding]]:
    """(param, constraint) for each constraint the request's extra fields ask for, in a fixed order; a 400 for a
    malformed value or an option that cannot be honoured."""
    found = [(name, constraint(kind, extra[name], name)) for name, kind in LEGACY_FIELDS.items()
             if extra.get(name) is not None]
    if extra.get("guided_whitespace_pattern") is not None:
        raise _unsupported("guided_whitespace_pattern", REFUSED_OPTIONS["whitespace_pattern"])
    if extra.get("structured_outputs") is not None:
        found += _structured_outputs(extra["structured_outputs"])
    return found


def _structured_outputs(fields: Any) -> list[tuple[str, GuidedDecoding]]:
    if not isinstance(fields, dict):
        raise invalid_param("structured_outputs must be an object", "structured_outputs")
    found = []
    for key, value in fields.items():
        param = f"structured_outputs.{key}"
        if value is None:  # vLLM's default for every key: not set
            continue
        if key in CONSTRAINT_KEYS:
            found.append((param, constraint(key, value, param)))
        elif key in NEUTRAL_OPTIONS:
            if not isinstance(value, bool):
                raise invalid_param(f"{param} must be a boolean", param)
        elif key in REFUSED_OPTIONS:
            raise _unsupported(param, REFUSED_OPTIONS[key])
        else:
            known = ", ".join((*CONSTRAINT_KEYS, *sorted(NEUTRAL_OPTIONS)))
            raise invalid_param(f"{param} is not a structured_outputs option (known: {known})", param)
    return found


# ---- /openapi.json ----------------------------------------------------------------------------------------------
_NULL = {"type": "null"}
_CONSTRAINT_SCHEMAS: dict[str, dict[str, Any]] = {
    "json": {"anyOf": [{"type": "object"}, {"type": "string", "contentMediaType": "application/json"}, _NULL],
             "description": "A JSON schema the answer must follow."},
    "regex": {"anyOf": [{"type": "string", "minLength": 1, "format": "regex"}, _NULL]},
    "grammar": {"anyOf": [{"type": "string", "minLength": 1}, _NULL],
                "description": "An EBNF grammar (xgrammar's dialect)."},
    "choice": {"anyOf": [{"type": "array", "items": {"type": "string"}, "minItems": 1}, _NULL]},
    "json_object": {"anyOf": [{"const": True}, _NULL], "description": "Any JSON object."},
}


def at_most_one(free: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """JSON Schema: at most one field holds a value its `free` schema (no constraint asked) does not admit. Spelled
    as "all but one are free", without `not`: the pairwise "not (a and b)" form grows past what schemathesis's
    canonicaliser takes for the chat request."""
    return {"anyOf": [{"properties": {other: schema for other, schema in free.items() if other != name}}
                      for name in free]}


STRUCTURED_OUTPUTS_SCHEMA: dict[str, Any] = {"anyOf": [{
    "type": "object", "additionalProperties": False,
    "properties": {**{k: _CONSTRAINT_SCHEMAS[k] for k in CONSTRAINT_KEYS},
                   **{k: {"type": ["boolean", "null"]} for k in sorted(NEUTRAL_OPTIONS)}},
    **at_most_one({k: _NULL for k in CONSTRAINT_KEYS}),
}, _NULL], "description": "vLLM's structured output: at most one of json, regex, choice, grammar, json_object."}

# the request extras these fields are, as /openapi.json publishes them
FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    **{name: _CONSTRAINT_SCHEMAS[kind] for name, kind in LEGACY_FIELDS.items()},
    "structured_outputs": STRUCTURED_OUTPUTS_SCHEMA,
}
# structured_outputs asks for no constraint (left out, null, or every constraint key null)
STRUCTURED_OUTPUTS_FREE: dict[str, Any] = {"anyOf": [
    _NULL, {"type": "object", "properties": {k: _NULL for k in CONSTRAINT_KEYS}}]}
