"""TaskSpec -> POST /v1/tasks body -> decode is the identity: the body a client builds from a
task file makes the daemon write a file with exactly the fields the task set."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from taskspecs import task_specs

from reconciler.api.decoding import decode_task_request
from reconciler.api.encoding import task_request
from reconciler.taskfiles.model import BufferPeriodConfig, ScheduleCondition, TaskSpec


@settings(max_examples=300, deadline=None)
@given(task_specs())
def test_a_task_request_decodes_to_the_same_task(generated: TaskSpec) -> None:
    spec = replace(
        generated,
        variable_files=None,
        working_dir=None,
        services=None,
        terraform_version=None,
        terraform_cloud_workspace=None,
    )
    assert decode_task_request(task_request(spec)) == spec


def test_only_the_fields_the_task_sets_are_sent() -> None:
    spec = TaskSpec(
        name="t",
        module="./m",
        condition=ScheduleCondition(cron="*/5 * * * *"),
        buffer_period=BufferPeriodConfig(min=5_000_000_000),
    )
    assert task_request(spec) == {
        "task": {
            "name": "t",
            "module": "./m",
            "condition": {"schedule": {"cron": "*/5 * * * *"}},
            "buffer_period": {"min": "5s"},
        }
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [("variable_files", ("a.tfvars",)), ("working_dir", "w"), ("services", ("web",))],
)
def test_fields_the_api_does_not_take_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f'"{field}" cannot be sent to the API'):
        task_request(replace(TaskSpec(name="t", module="./m"), **{field: value}))
