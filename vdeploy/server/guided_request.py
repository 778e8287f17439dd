"""What an OpenAI request asks the output to be: structured output and tool choice -> GuidedDecoding + ToolPlan.

Sources, at most one grammar per request:
  response_format   {"type": "json_object"} | {"type": "json_schema", "json_schema": {"schema": …, "strict": …}}
  extra_body        vLLM's structured_outputs {"json" | "regex" | "choice" | "grammar" | "json_object": …} or its
                    older guided_json / guided_regex / guided_choice / guided_grammar (structured_output_fields.py)
  tool_choice       "required" (a JSON array of {"name", "parameters"} calls, at least one) or a named function
                    (the function's arguments object): enforced by grammar, so even a small model returns valid calls;
                    "auto" lets the model choose and a tool-call parser reads its native format; "none" hides tools.
With a reasoning parser the grammar starts after `</think>`: the reasoning stays free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from vdeploy.engine.sampling_params import GuidedDecoding
from vdeploy.server.errors import invalid_param
from vdeploy.server.structured_output_fields import (LEGACY_FIELDS, STRUCTURED_OUTPUTS_FREE, at_most_one, constraint,
                                                     requested_constraints)

THINK_END = "</think>"


@dataclass
class ToolPlan:
    mode: str  # "none" | "auto" | "required" | "named"
    tools: list[dict[str, Any]] = field(default_factory=list)  # OpenAI tool dicts, for the chat template
    named: Optional[str] = None  # the function tool_choice names
    parallel: bool = True  # OpenAI's parallel_tool_calls: False allows one call only

    @property
    def max_calls(self) -> Optional[int]:
        """At most this many calls in one answer (None: no limit): the "required" grammar's maxItems, and what the
        answer keeps where no grammar can count calls (tool_choice auto)."""
        return None if self.parallel else 1

    @property
    def template_tools(self) -> Optional[list[dict[str, Any]]]:
        return self.tools if self.tools and self.mode != "none" else None


def _function(tool: Any, i: int) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
        raise invalid_param(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}", f"tools[{i}]")
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        raise invalid_param(f"tools[{i}].function.name is required", f"tools[{i}].function.name")
    if not isinstance(fn.get("description", ""), str):
        raise invalid_param(f"tools[{i}].function.description must be a string", f"tools[{i}].function.description")
    params = fn.get("parameters", {"type": "object"})
    if not isinstance(params, dict):
        raise invalid_param(f"tools[{i}].function.parameters must be a JSON schema object",
                            f"tools[{i}].function.parameters")
    return fn


def parameters_schema(fn: dict[str, Any]) -> dict[str, Any]:
    return fn.get("parameters") or {"type": "object", "properties": {}}


def tool_plan(tools: Optional[list[Any]], tool_choice: Any, parallel: Any = True) -> ToolPlan:
    plan = _tool_plan(tools, tool_choice)
    plan.parallel = parallel is not False
    return plan


def _tool_plan(tools: Optional[list[Any]], tool_choice: Any) -> ToolPlan:
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise invalid_param("tool_choice needs tools", "tool_choice")
        return ToolPlan("none")
    functions = [_function(t, i) for i, t in enumerate(tools)]
    if tool_choice is None or tool_choice == "auto":
        return ToolPlan("auto", list(tools))
    if tool_choice in ("none", "required"):
        return ToolPlan(tool_choice, list(tools))
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        name = tool_choice["function"].get("name")
        if name not in {f["name"] for f in functions}:
            raise invalid_param(f"tool_choice names the function {name!r}, which is not in tools", "tool_choice",
                                code="unknown_tool")
        return ToolPlan("named", list(tools), named=name)
    raise invalid_param("tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'function': "
                        "{'name': ...}}", "tool_choice")


def _tools_grammar(plan: ToolPlan) -> Optional[str]:
    functions = [t["function"] for t in plan.tools]
    if plan.mode == "named":
        fn = next(f for f in functions if f["name"] == plan.named)
        return json.dumps(parameters_schema(fn))
    if plan.mode == "required":
        calls = [{"type": "object", "properties": {"name": {"const": f["name"]}, "parameters": parameters_schema(f)},
                  "required": ["name", "parameters"], "additionalProperties": False} for f in functions]
        array: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": calls}}
        if plan.max_calls is not None:
            array["maxItems"] = plan.max_calls
        return json.dumps(array)
    return None


def one_output_constraint_schema(with_tools: bool) -> dict[str, Any]:
    """JSON Schema for 'at most one output constraint per request' (guided_decoding refuses two): each field's
    values that ask for no constraint."""
    free: dict[str, Any] = {name: {"type": "null"} for name in LEGACY_FIELDS}
    free["structured_outputs"] = STRUCTURED_OUTPUTS_FREE
    free["response_format"] = {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"type": {
        "const": "text"}}}]}
    if with_tools:  # tool_choice "required" or a named function constrains the answer to a call
        free["tool_choice"] = {"anyOf": [{"type": "null"}, {"enum": ["none", "auto"]}]}
    return at_most_one(free)


def guided_decoding(req: Any, plan: Optional[ToolPlan], reasoning: bool) -> Optional[GuidedDecoding]:
    """The request's grammar, or None when the output is free. Raises a 400 on conflicting or malformed fields."""
    found: list[tuple[str, GuidedDecoding]] = []
    rf = getattr(req, "response_format", None)
    if rf is not None and rf.type == "json_object":
        found.append(("response_format", constraint("json_object", True, "response_format")))
    elif rf is not None and rf.type == "json_schema":
        found.append(("response_format",
                      constraint("json", rf.json_schema.schema_, "response_format.json_schema.schema")))
    found += requested_constraints(req.model_extra or {})
    if plan is not None and (tools_schema := _tools_grammar(plan)) is not None:
        found.append(("tool_choice", GuidedDecoding(json=tools_schema)))
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(n for n, _ in found)
        raise invalid_param(f"only one output constraint per request, got {names}", found[1][0])
    guided = found[0][1]
    guided.after_think = THINK_END if reasoning else None
    return guided
