"""The tools' arguments as a model meets them: published as valid, compact JSON Schema 2020-12 that states every bound
the server enforces, and refused — when they do not fit — with one line that starts with VALIDATION_ERROR, names the
parameter, shows what was given and says what is allowed, in the words of that same schema.

The SDK would answer a bad argument itself ("Error executing tool …: 1 validation error for …Arguments … https://
errors.pydantic.dev/…") and drop an unknown one silently; `TodoTool` catches both before the tool runs.
"""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Any, Final

import pydantic
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool

from mcp_todo.domain.errors import ValidationError
from mcp_todo.schemas import drop_property_titles, inline_refs, lean_schema
from mcp_todo.server.results import run_tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context

_SHOWN: Final = 40
_MAX_PROBLEMS: Final = 3
# add_task's batch: a list of items, each holding one task's fields; the tool's own fields are for one task.
BATCH: Final = "tasks"


# --- published schemas --------------------------------------------------------------------------------------------


def _collapse_null(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` (pydantic's `X | None`) as X with "null" among its types — the same instances, in
    fewer bytes — and no `default: null` (an omitted optional argument is null)."""
    branches = node.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and branches[1] == {"type": "null"}:
        first = dict(branches[0])
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        if isinstance(first.get("type"), str) and not {"anyOf", "oneOf", "allOf", "$ref"} & set(first):
            if "enum" in first:  # the enum alone says it all
                first["enum"] = [*first["enum"], None]
                del first["type"]
            else:
                first["type"] = [first["type"], "null"]
            node = {**first, **rest}
    if node.get("default", ...) is None:
        del node["default"]
    return node


def _closed_object(node: dict[str, Any]) -> None:
    drop_property_titles(node)
    node.pop("title", None)
    properties = node.get("properties", {})
    for name, prop in list(properties.items()):
        properties[name] = _collapse_null(prop)
    node["additionalProperties"] = False


def _not_null(prop: dict[str, Any]) -> None:
    kind = prop.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [k for k in kind if k != "null"]
        prop["type"] = rest[0] if len(rest) == 1 else rest
    if None in prop.get("enum", []):
        prop["enum"] = [value for value in prop["enum"] if value is not None]


def input_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters (and the objects they hold, such as add_task's batch items) compact and closed."""
    for definition in parameters.get("$defs", {}).values():
        definition.pop("description", None)  # the parameter that holds it says what it is
        _closed_object(definition)
        for prop in definition.get("properties", {}).values():  # in an item, a field is given or left out
            _not_null(prop)
    _closed_object(parameters)
    return parameters


BRIEF_FIELDS: Final = ("id", "title", "status", "due_date", "next_occurrence")


def _brief(shape: dict[str, Any]) -> None:
    """A result that is one changed task, published with the fields a model acts on; its other fields are the ones
    list_tasks's schema lists (not repeated: 5 tools return one task, and each repeat costs a kilobyte per
    tools/list). The schema does not close the object, so the full result validates."""
    properties = shape.get("properties", {})
    if "title" in properties and "created_at" in properties:
        shape["properties"] = {name: properties[name] for name in BRIEF_FIELDS if name in properties}
        shape["required"] = [name for name in shape.get("required", []) if name in shape["properties"]]
        shape["description"] = "The task; its other fields as in list_tasks"


def _undescribed(node: Any) -> Any:
    """A result's nested schema without descriptions (nor a type beside an enum): the task fields are named
    plainly, and the Task schema is repeated in 13 tools' output schemas of every tools/list (docs/tools.md describes
    each field once)."""
    if isinstance(node, list):
        return [_undescribed(item) for item in node]
    if not isinstance(node, dict):
        return node
    # An enum says its type itself: one keyword less to send, and to check per task in a validating client.
    return {
        key: _undescribed(value)
        for key, value in node.items()
        if key != "description" and not (key == "type" and "enum" in node)
    }


def _flat(node: dict[str, Any]) -> dict[str, Any]:
    """An object (or an array of objects) inside a task, named by what it requires: `{type: object, required: [id,
    name]}`. A client validating a result (the SDK's does, with jsonschema) descends once per property the schema
    lists, for every task of a list: a task's category, tags and recurrence are three levels of that per task, the
    better part of validating a list of 50 (bench/results/lean.md measures it). docs/tools.md gives their fields."""
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return {**node, "items": _flat(node["items"])}
    return {key: value for key, value in node.items() if key in ("type", "required")}


def _flat_task(task: dict[str, Any]) -> None:
    """A task's schema, its nested objects flat (`_flat`), in place."""
    properties = task.get("properties", {})
    for name in ("category", "tags", "recurrence"):
        if name in properties:
            properties[name] = _flat(properties[name])


def output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema as published: lean (`lean_schema`), inlined, and described only at the top level of a list
    result (what `total` counts, whose zone and time): a task's fields are described once, in docs/tools.md."""
    lean = lean_schema(inline_refs(schema))
    for shape in lean.get("anyOf", [lean]):  # a tool that takes one task or a batch returns either shape
        properties = shape.get("properties", {})
        keep = "tasks" in properties or "total" in properties
        for name, prop in properties.items():
            properties[name] = prop if keep and prop.get("type") not in ("array", "object") else _undescribed(prop)
        if "created_at" in properties:
            _flat_task(shape)
        if isinstance(properties.get("tasks", {}).get("items"), dict):
            _flat_task(properties["tasks"]["items"])
    return lean


def publishable(tool: Tool, *, takes_words: bool, brief: bool = False) -> None:
    """Shape `tool`'s schemas for publishing, in place. The output schema is what the lean results fill; the server
    does not re-validate its own results against their model (they are built from it), the clients do against the
    schema."""
    tool.parameters = input_schema(tool.parameters)
    metadata = tool.fn_metadata
    if metadata.output_schema is not None:
        output = output_schema(metadata.output_schema)
        if brief:
            for shape in output.get("anyOf", [output]):
                _brief(shape)
        if takes_words:  # stated in docs/tools.md rather than in every tools/list: it is a plain string map
            output.setdefault("properties", {})["understood"] = {"type": "object"}
        metadata.output_schema = output
        metadata.output_model = None


# --- argument errors ----------------------------------------------------------------------------------------------


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def allowed(schema: dict[str, Any]) -> str:
    """What a parameter's schema allows, in words: "an integer from 1 to 100", "one of pending, completed, all"."""
    nullable = " (or null)" if "null" in _types(schema) else ""
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"] if v is not None) + nullable
    kinds = [k for k in _types(schema) if k != "null"]
    kind = kinds[0] if kinds else "value"
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"an integer from {low} to {high}{nullable}"
        if low is not None:
            return f"an integer of at least {low}{nullable}"
        return "an integer" + nullable
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        text = "text"
        if high is not None:
            text += f" of {low} to {high} characters" if low else f" of at most {high} characters"
        if "pattern" in schema:
            text += f" matching {schema['pattern']}"
        return text + nullable
    if kind == "array":
        items = schema.get("items", {})
        size = f" of at most {schema['maxItems']} items" if "maxItems" in schema else ""
        each = allowed(items).removesuffix(" (or null)")
        return f"a list{size}, each {each}{nullable}"
    if kind == "boolean":
        return "true or false" + nullable
    return kind + nullable


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _schema_at(parameters: dict[str, Any], location: tuple[Any, ...]) -> dict[str, Any]:
    node: dict[str, Any] = parameters.get("properties", {}).get(str(location[0]), {}) if location else {}
    for part in location[1:]:
        if isinstance(part, int) and "items" in node:
            node = node["items"]
    return node


def _did_you_mean(name: str, known: list[str]) -> str:
    close = [k for k in known if k.startswith(name) or name.startswith(k)] or difflib.get_close_matches(
        name, known, n=1
    )
    return f" (did you mean {close[0]}?)" if close else ""


def _item_keys(parameters: dict[str, Any], name: str) -> list[str]:
    """The keys an item of the list parameter `name` may have (its schema is a `$ref` into `$defs`)."""
    reference = str(parameters.get("properties", {}).get(name, {}).get("items", {}).get("$ref", ""))
    item = parameters.get("$defs", {}).get(reference.rpartition("/")[2], {})
    return list(item.get("properties", {}))


def batch_beside(arguments: dict[str, Any]) -> str | None:
    """The problem with single-task arguments given beside add_task's batch (`tasks`), which would be ignored."""
    if arguments.get(BATCH) is None:
        return None
    beside = [name for name, value in arguments.items() if name != BATCH and value is not None]
    if not beside:
        return None
    return (
        f"give either one task's fields (title, …) or tasks (a batch), not both: {', '.join(beside)} "
        f"{'was' if len(beside) == 1 else 'were'} given beside tasks — put {'it' if len(beside) == 1 else 'them'} "
        "in each item instead"
    )


def argument_problems(parameters: dict[str, Any], arguments: dict[str, Any], errors: list[Any]) -> str:
    """One line for the arguments pydantic refused (`errors`) and the ones the schema does not name."""
    problems: list[str] = []
    known = list(parameters.get("properties", {}))
    for name in arguments:
        if name not in known:
            problems.append(
                f"{name}: unknown argument{_did_you_mean(name, known)}; the arguments are {', '.join(known) or 'none'}"
            )
    seen: set[str] = set()
    # An unknown key in a list's item (add_task's tasks) first: the other errors of that item may follow from it.
    for error in sorted(errors, key=lambda error: error["type"] != "extra_forbidden"):
        # A union's branches add their tags to the location ("int", "none"): keep the name and the list indices.
        location = tuple(part for i, part in enumerate(error["loc"]) if i == 0 or isinstance(part, int))
        if not location or str(location[0]) in seen or str(location[0]) not in known:
            continue
        seen.add(str(location[0]))
        where = ".".join(str(part) for part in location)
        if error["type"] == "extra_forbidden":
            key, keys = str(error["loc"][-1]), _item_keys(parameters, str(location[0]))
            problems.append(
                f"{where}.{key}: unknown key{_did_you_mean(key, keys)}; an item's keys are {', '.join(keys)}"
            )
            continue
        got = "missing" if error["type"] == "missing" else f"got {_shown(error.get('input'))}"
        problems.append(f"{where}: {got}; allowed: {allowed(_schema_at(parameters, location))}")
    if not problems:
        problems.append("the arguments do not match the tool's schema")
    more = len(problems) - _MAX_PROBLEMS
    return "; ".join(problems[:_MAX_PROBLEMS]) + (f" (and {more} more)" if more > 0 else "")


class TodoTool(Tool):
    """A tool whose argument errors are VALIDATION_ERROR results (logged and counted like every other outcome)."""

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        unknown = set(arguments) - set(self.parameters.get("properties", {}))
        if unknown:
            return await self._refuse(context, argument_problems(self.parameters, arguments, []))
        if BATCH in self.parameters.get("properties", {}) and (beside := batch_beside(arguments)):
            try:  # an argument outside its schema is named first, as in every other call
                self.fn_metadata.validate_arguments(arguments)
            except pydantic.ValidationError as exc:
                return await self._refuse(context, self._problems(arguments, exc))
            return await self._refuse(context, beside)
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as exc:
            if not isinstance(exc.__cause__, pydantic.ValidationError):
                raise
            return await self._refuse(context, self._problems(arguments, exc.__cause__))

    def _problems(self, arguments: dict[str, Any], error: pydantic.ValidationError) -> str:
        return argument_problems(self.parameters, arguments, error.errors(include_url=False))

    async def _refuse(self, context: Context[Any, Any], problem: str) -> Any:
        user = context.request_context.lifespan_context.user_for_request()

        async def fail() -> Any:
            raise ValidationError(problem)

        return await run_tool(self.name, user, fail)
