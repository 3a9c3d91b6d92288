"""API JSON -> HCL file -> parse -> API JSON is the identity, for generated tasks whose
strings hold quotes, backslashes, newlines, unicode, `${` and `%{`."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import assume, given, settings
from taskspecs import task_specs

from reconciler.api.decoding import decode_task_request
from reconciler.api.representation import task_object
from reconciler.commands.service import validation_message
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import GlobalDefaults, TaskSpec
from reconciler.taskfiles.validate import validate_task
from reconciler.taskfiles.write import checked_render

DEFAULTS = GlobalDefaults()


@settings(max_examples=300, deadline=None)
@given(task_specs())
def test_api_json_through_a_file_and_back_is_the_identity(generated: TaskSpec) -> None:
    # Fields the API cannot carry (cts-spec 3.3: unknown fields are 400).
    spec = replace(generated, variable_files=None, working_dir=None, services=None)
    assume(spec.condition is not None and not validate_task(spec))
    api_json = task_object(spec, DEFAULTS)

    decoded = decode_task_request({"task": api_json})
    assert validation_message(decoded) is None
    loaded = load_task_file(checked_render(decoded), f"{decoded.name}.hcl")
    assert loaded.problems == []
    (task,) = loaded.tasks
    assert task_object(task.spec, DEFAULTS) == api_json
