"""The JSON Schemas of every body the API reads or writes: the OpenAPI document's
`components.schemas` (reconciler.api.openapi puts them together with the operations).

Each schema states what the code accepts or sends, not an ideal: a request schema is as
strict as reconciler.api.decoding (unknown fields, wrong types and nulls are 400s), a
response schema as complete as reconciler.api.representation and reconciler.api.status
make it. Names follow CTS's own api/openapi.yaml where the shape is the same.

OpenAPI 3.0 (not 3.1) so that the generators CTS clients use (oapi-codegen, kin-openapi)
read it; hence `nullable` instead of a "null" type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.registry.status import KEEP, STATUSES
from reconciler.taskfiles.conditions import INPUT_KINDS, KINDS
from reconciler.taskfiles.conditions.base import Field
from reconciler.taskfiles.validate import MAX_NAME_BYTES

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
COUNT: Schema = {"type": "integer", "minimum": 0}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def string_map(description: str | None = None) -> Schema:
    out: Schema = {"type": "object", "additionalProperties": STRING}
    if description:
        out["description"] = description
    return out


def closed(
    properties: Mapping[str, Schema],
    required: Iterable[str] = (),
    description: str | None = None,
) -> Schema:
    """An object with exactly these fields (`additionalProperties: false`)."""
    out: Schema = {"type": "object", "properties": dict(properties)}
    if description:
        out["description"] = description
    names = list(required)
    if names:
        out["required"] = names
    out["additionalProperties"] = False
    return out


def described(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description}


DURATION: Schema = {
    "type": "string",
    "pattern": r"^(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$",
    "description": 'A Go duration ("5s", "1m30s", "250ms"); responses use Go\'s canonical '
    'form ("1m0s").',
}
STRINGS = array(STRING)

# --- errors and ids ------------------------------------------------------------------------

_ERRORS: dict[str, Schema] = {
    "RequestID": {
        "type": "string",
        "format": "uuid",
        "description": "A random UUID per request; it is also in every log line of the request.",
        "example": "bb63cd70-8f45-4f42-b27b-bc2a6f4931e6",
    },
    "Error": closed(
        {"message": described(STRING, "What went wrong and, where there is one, the fix.")},
        ["message"],
    ),
    "ErrorResponse": closed(
        {"error": ref("Error"), "request_id": ref("RequestID")},
        ["error", "request_id"],
        "Every 4xx and 5xx answer of the daemon's own routes has this shape.",
    ),
}

# --- the task object -----------------------------------------------------------------------

_FIELD_TYPES: dict[str, Schema] = {
    "str": STRING,
    "bool": BOOLEAN,
    "list": STRINGS,
    "map": string_map(),
}
_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _kind_schema(fields: tuple[Field, ...]) -> Schema:
    """A condition's or module_input's schema, from its kind's fields."""
    properties = {
        f.name: described(_FIELD_TYPES[f.type], f.description)
        if f.description
        else _FIELD_TYPES[f.type]
        for f in fields
    }
    return closed(properties, [f.name for f in fields if f.required])


def _count(n: int) -> str:
    return _COUNTS[n] if n < len(_COUNTS) else str(n)


_TASK: dict[str, Schema] = {
    "TaskRequest": closed({"task": ref("NewTask")}, ["task"]),
    "NewTask": closed(
        {
            "name": described(
                STRING,
                "The unique name of the task, which also names its file (<name>.hcl): a "
                'letter or "_", then letters, digits, "_" or "-", at most '
                f"{MAX_NAME_BYTES} bytes.",
            ),
            "module": described(
                STRING, "The Terraform module: a local path or a registry address."
            ),
            "condition": ref("Condition"),
            "description": STRING,
            "enabled": described(BOOLEAN, "Whether the task runs (default true)."),
            "providers": described(
                STRINGS, 'Provider names the module uses ("name" or "name.alias").'
            ),
            "version": described(STRING, "The module version (registry modules)."),
            "variables": ref("VariableMap"),
            "module_input": ref("ModuleInput"),
            "buffer_period": ref("BufferPeriod"),
            "terraform_version": described(
                STRING, "Enterprise only: a non-empty value is refused (400)."
            ),
            "terraform_cloud_workspace": ref("TerraformCloudWorkspace"),
        },
        ["name", "module", "condition"],
        "A task as POST /v1/tasks takes it. Only the fields sent are written to the task's "
        "file. `working_dir`, `variable_files`, `source` and the deprecated `services` list "
        "cannot be sent.",
    ),
    "Task": {
        "description": "A task as the API shows it: every field explicit, CTS's defaults "
        "filled in, service names sorted, `buffer_period` the period the task actually gets "
        "(its own, or the global one it inherits).",
        "allOf": [
            ref("NewTask"),
            {
                "required": [
                    "buffer_period",
                    "condition",
                    "description",
                    "enabled",
                    "module",
                    "module_input",
                    "name",
                    "providers",
                    "variables",
                    "version",
                ],
                "properties": {"buffer_period": {"required": ["enabled", "min", "max"]}},
            },
        ],
    },
    "VariableMap": string_map(
        "Input variables of the module. Each value is HCL literal source, as in CTS: "
        '"\\"text\\"", "10", "[\\"a\\", \\"b\\"]"; responses show it in canonical form.'
    ),
    "BufferPeriod": closed(
        {"enabled": BOOLEAN, "min": DURATION, "max": DURATION},
        description="How long to wait after a change before running the task.",
    ),
    "Condition": {
        **closed(
            {k.api_name: ref(k.condition_schema) for k in KINDS},
            description=f"What triggers the task: exactly one of the {_count(len(KINDS))}.",
        ),
        "minProperties": 1,
        "maxProperties": 1,
    },
    **{k.condition_schema: _kind_schema(k.condition_fields) for k in KINDS},
    "ModuleInput": closed(
        {k.api_name: ref(k.input_schema) for k in INPUT_KINDS.values()},
        description="More inputs for the module, besides the condition's.",
    ),
    **{k.input_schema: _kind_schema(k.input_fields) for k in INPUT_KINDS.values()},
    "TerraformCloudWorkspace": closed(
        {
            "execution_mode": STRING,
            "agent_pool_id": STRING,
            "agent_pool_name": STRING,
            "terraform_version": STRING,
        },
        description="Enterprise only: a non-empty value is refused (400).",
    ),
}

# --- task responses ------------------------------------------------------------------------

_PLAN_FIELDS: dict[str, Schema] = {
    "changes_present": described(BOOLEAN, "Whether the plan would change anything."),
    "plan": described(STRING, "Terraform's plan output."),
}

_TASK_RESPONSES: dict[str, Schema] = {
    "TasksResponse": closed(
        {"request_id": ref("RequestID"), "tasks": array(ref("Task"))},
        ["request_id", "tasks"],
        "Every task, sorted by name.",
    ),
    "TaskResponse": closed(
        {"request_id": ref("RequestID"), "task": ref("Task"), "run": ref("Run")},
        ["request_id", "task"],
        "A task; with `run` only as the answer to POST /v1/tasks?run=inspect.",
    ),
    "Run": closed(_PLAN_FIELDS, ["changes_present", "plan"]),
    "TaskDeleteResponse": closed({"request_id": ref("RequestID")}, ["request_id"]),
    "TaskDestroyResponse": closed(
        {
            "request_id": ref("RequestID"),
            "inspect": closed(_PLAN_FIELDS, ["changes_present", "plan"]),
        },
        description="`request_id` after a destroy; `inspect` for run=inspect.",
    ),
    "TaskUpdateRequest": {
        **closed(
            {
                "enabled": BOOLEAN,
                "module": STRING,
                "condition": ref("Condition"),
                "description": nullable(STRING),
                "version": nullable(STRING),
                "providers": nullable(STRINGS),
                "variables": nullable(ref("VariableMap")),
                "module_input": nullable(ref("ModuleInput")),
                "buffer_period": nullable(ref("BufferPeriod")),
            },
            description="The fields to change; the others stay as they are. `enabled` "
            'alone is read weakly typed, as in CTS ("true", "false", 1 and 0 are accepted '
            "too). Any other field is checked as a create's is; null removes an optional "
            "field. The task's file changes only where the values do.",
        ),
        "minProperties": 1,
    },
    "TaskUpdateResponse": closed(
        {"inspect": closed(_PLAN_FIELDS, ["changes_present", "plan"])},
        description="`{}`, or with `inspect` for run=inspect.",
    ),
}

# --- status --------------------------------------------------------------------------------

_REVISION = described(nullable(STRING), "A file's content digest, or a git commit sha.")

_STATUS: dict[str, Schema] = {
    "TaskStatuses": {
        "type": "object",
        "additionalProperties": ref("TaskStatus"),
        "description": "Task name -> its status, sorted by name.",
    },
    "TaskStatus": closed(
        {
            "task_name": STRING,
            "status": {
                "type": "string",
                "enum": list(STATUSES),
                "description": "From the last runs: `unknown` (none), `successful` (the "
                "newest succeeded), `errored` (the newest failed, no other did), `critical` "
                "(the newest and at least one other failed).",
            },
            "enabled": BOOLEAN,
            "events_url": described(
                STRING, '"/v1/status/tasks/<name>?include=events", or "" without events.'
            ),
            "events": described(
                {**array(ref("Event")), "maxItems": KEEP},
                f"With include=events: the last {KEEP} runs, newest first.",
            ),
            "providers": STRINGS,
            "services": STRINGS,
            "source": closed(
                {
                    "file": described(STRING, "The file, relative to its source's root."),
                    "line": {"type": "integer", "minimum": 1},
                    "revision": STRING,
                },
                ["file", "line", "revision"],
                "Where the task is defined.",
            ),
            "file_errors": described(
                STRINGS,
                "What is wrong with the task's file now; the task keeps its last good "
                "definition meanwhile.",
            ),
            "active": described(BOOLEAN, "A Terraform run of the task is in progress."),
            "deleting": described(BOOLEAN, "Deleted; waits for its run to end."),
            "init_error": described(
                nullable(STRING),
                "Why the task's workspace could not be initialised or its trigger cannot fire.",
            ),
            "desired_revision": described(STRING, "The revision its file has now."),
            "last_attempted_revision": _REVISION,
            "last_applied_revision": _REVISION,
            "waiting_on": {
                "type": "object",
                "additionalProperties": {"type": "object"},
                "description": "Trigger source -> what would make the task run there: its "
                "Consul queries, its buffer deadline or its next cron time.",
            },
            "override": nullable(
                closed(
                    {
                        "enabled": BOOLEAN,
                        "deleted": BOOLEAN,
                        "file": described(STRING, "The task's block in its file, file:line."),
                        "at": STRING,
                        "request_id": STRING,
                        "reason": STRING,
                    },
                    ["file", "at", "request_id", "reason"],
                    "A task of the configuration files changed through the API: how it "
                    "runs differently from its file, until the file's task changes.",
                )
            ),
        },
        [
            "task_name",
            "status",
            "enabled",
            "events_url",
            "providers",
            "services",
            "source",
            "file_errors",
            "active",
            "deleting",
            "init_error",
            "desired_revision",
            "last_attempted_revision",
            "last_applied_revision",
            "waiting_on",
            "override",
        ],
    ),
    "Event": closed(
        {
            "id": STRING,
            "success": BOOLEAN,
            "start_time": {"type": "string", "format": "date-time"},
            "end_time": {"type": "string", "format": "date-time"},
            "task_name": STRING,
            # Error inline: a $ref cannot be nullable in OpenAPI 3.0.
            "error": nullable(closed({"message": STRING}, ["message"])),
            "config": closed(
                {"providers": STRINGS, "services": STRINGS, "source": STRING},
                ["providers", "services", "source"],
            ),
        },
        ["id", "success", "start_time", "end_time", "task_name", "error", "config"],
    ),
    "OverallStatus": closed(
        {
            "task_summary": closed(
                {
                    "status": closed({s: COUNT for s in STATUSES}, STATUSES),
                    "enabled": closed({"true": COUNT, "false": COUNT}, ["true", "false"]),
                },
                ["status", "enabled"],
            ),
            "sources": {
                "type": "object",
                "additionalProperties": ref("SourceState"),
                "description": "Source name -> its state.",
            },
            "runs": closed(
                {
                    "tasks": COUNT,
                    "initialised": COUNT,
                    "applied": COUNT,
                    "pending": COUNT,
                    "init_errors": COUNT,
                },
                ["tasks", "initialised", "applied", "pending", "init_errors"],
                "How far the tasks' runs are (absent when the daemon runs no Terraform).",
            ),
        },
        ["task_summary", "sources"],
    ),
    "SourceState": closed(
        {
            "error": described(nullable(STRING), "Why the source cannot be read now."),
            "failed_attempts": COUNT,
            "next_attempt_at": nullable({"type": "string", "format": "date-time"}),
            "prune_guard": described(
                nullable(STRING), "Why the prune guard holds tasks the files no longer define."
            ),
            "revision": nullable(STRING),
            "files_with_problems": {
                "type": "object",
                "additionalProperties": closed(
                    {
                        "errors": STRINGS,
                        "last_attempted_revision": _REVISION,
                        "last_applied_revision": _REVISION,
                    },
                    ["errors", "last_attempted_revision", "last_applied_revision"],
                ),
                "description": "File -> what is wrong with it.",
            },
            "details": described(
                {"type": "object"}, "Source-specific state (a git source's fetches and pushes)."
            ),
        },
        [
            "error",
            "failed_attempts",
            "next_attempt_at",
            "prune_guard",
            "revision",
            "files_with_problems",
        ],
    ),
    "HealthResponse": closed(
        {"high_availability": ref("MemberRole")},
        description="`{}`: healthy; with high availability, this member's role too.",
    ),
}

# --- high availability ---------------------------------------------------------------------

_CLUSTER: dict[str, Schema] = {
    "MemberRole": closed(
        {
            "id": STRING,
            "role": {"type": "string", "enum": ["leader", "follower"]},
            "leader": described(nullable(STRING), "The leader's id; null when none is known."),
            "term": described(
                nullable(COUNT), "The leader's term, on the leader; null on a follower."
            ),
        },
        ["id", "role", "leader", "term"],
    ),
    "ClusterStatusResponse": closed(
        {"cluster_name": STRING, "members": array(ref("Member")), "request_id": ref("RequestID")},
        ["cluster_name", "members", "request_id"],
    ),
    "Member": closed(
        {
            "id": STRING,
            "address": described(STRING, 'Its instance address; "" when it has none.'),
            "healthy": BOOLEAN,
            "leader": BOOLEAN,
        },
        ["id", "address", "healthy", "leader"],
    ),
}

# --- the webhook ---------------------------------------------------------------------------

_WEBHOOK: dict[str, Schema] = {
    "WebhookResponse": closed(
        {
            "scheduled": described(
                {"type": "integer", "minimum": 1},
                "How many sources' secrets signed the call; each fetches now.",
            ),
            "request_id": ref("RequestID"),
        },
        ["scheduled", "request_id"],
    ),
}

SCHEMAS: dict[str, Schema] = {
    **_ERRORS,
    **_TASK,
    **_TASK_RESPONSES,
    **_STATUS,
    **_CLUSTER,
    **_WEBHOOK,
}
