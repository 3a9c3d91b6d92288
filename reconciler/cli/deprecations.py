"""The deprecated task fields that `task create` refuses to send, with CTS's upgrade hints.

Task files still load with them (the loader maps them to their replacements and warns), but
the API takes only the current fields, so, as CTS's `task create` does, the CLI asks the
user to upgrade the file instead of translating it silently. The messages are CTS's
(command/task_create.go), found from the parsed file rather than the decoded task, which no
longer says which spelling was used.
"""

from __future__ import annotations

from reconciler.taskfiles.hcl import Block, Value

_NOTES = "https://consul.io/docs/nia/release-notes/0-5-0"

_SOURCE = """the 'source' field in the task block is no longer supported

Please replace 'source' with 'module' in your task configuration.

Suggested replacement:
|    task {{
|  -   source =  "{module}"
|  +   module =  "{module}"
|      ...
|    }}

For more details and examples, please see:
{notes}#deprecate-source-field
"""

_SOURCE_INPUT = """the 'source_input' block in the task is no longer supported

Please replace 'source_input' with 'module_input' in your task configuration.

Suggested replacement:
|    task {{
|  -   source_input "{kind}" {{
|  +   module_input "{kind}" {{
|        ...
|      }}
|      ...
|    }}

For more details and examples, please see:
{notes}#deprecate-source_input-block
"""

_SOURCE_INCLUDES_VAR = """the 'source_includes_var' field in the task's 'condition "{kind}"' \
block is no longer supported

Please replace 'source_includes_var' with 'use_as_module_input' in your condition \
configuration.

Suggested replacement:
|    task {{
|      condition "{kind}" {{
|  -     source_includes_var = {value}
|  +     use_as_module_input = {value}
|      }}
|      ...
|    }}

For more details and examples, please see:
{notes}#deprecate-source_includes_var-field
"""

_SERVICES = """the 'services' field in the task block is no longer supported

'services' in a task configuration are to be replaced with the following:
 * condition "services": if there is _no_ preexisting condition block configured in your task
 * module_input "services": if there is a preexisting condition block configured in your task

{action}

For more details and additional examples, please see:
{notes}#deprecate-services-field
"""

_REPLACE_WITH = """Please replace the 'services' field with the following '{block}' block

task {{
  ...
  {block} {{
    names=[{names}]
  }}
  ...
}}"""

_BOTH = (
    "list of 'services' and '{block}' block cannot both be configured. "
    "Consider using the 'names' field under '{block}'"
)


def _attr(block: Block, name: str) -> Value | None:
    return next((a.value for a in block.body.attributes if a.name == name), None)


def _hcl_bool(value: Value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def deprecation_messages(task: Block) -> list[str]:
    """One message per deprecated field of the `task` block (empty: none)."""
    out: list[str] = []
    source = _attr(task, "source")
    if source is not None:
        out.append(_SOURCE.format(module=source, notes=_NOTES))
    for block in task.body.blocks:
        if block.type == "source_input" and block.labels:
            out.append(_SOURCE_INPUT.format(kind=block.labels[0], notes=_NOTES))
    conditions = [b for b in task.body.blocks if b.type == "condition" and b.labels]
    for block in conditions:
        legacy = _attr(block, "source_includes_var")
        if legacy is not None:
            out.append(
                _SOURCE_INCLUDES_VAR.format(
                    kind=block.labels[0], value=_hcl_bool(legacy), notes=_NOTES
                )
            )
    services = _attr(task, "services")
    if isinstance(services, list) and services:
        inputs = {b.labels[0] for b in task.body.blocks if b.type == "module_input" and b.labels}
        condition = conditions[0].labels[0] if conditions else None
        if condition == "services":
            action = _BOTH.format(block='condition "services"')
        elif "services" in inputs:
            action = _BOTH.format(block='module_input "services"')
        else:
            names = ",".join(f'"{s}"' for s in services)
            kind = 'module_input "services"' if condition else 'condition "services"'
            action = _REPLACE_WITH.format(block=kind, names=names)
        out.append(_SERVICES.format(action=action, notes=_NOTES))
    return out
