"""Every validation rule of a task file (cts-spec 1.4 and 1.5): message and line."""

from __future__ import annotations

import json

import pytest

from reconciler.taskfiles.load import load_task_file


def problems(text: str, name: str = "tasks/web.hcl") -> list[str]:
    return [str(p) for p in load_task_file(text.encode(), name).problems]


CASES = [
    # (id, file text, expected problem)
    (
        "name-missing",
        'task {\n  module = "m"\n  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:1: task: "name" is required',
    ),
    (
        "name-not-identifier",
        'task {\n  name = "9web"\n  module = "m"\n  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:2: task "9web": name "9web" is not a valid identifier: start with a '
        'letter or "_", then use letters, digits, "_" or "-"',
    ),
    (
        "name-path-traversal",
        'task {\n  name = "../x"\n  module = "m"\n  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:2: task "../x": name "../x" is not a valid identifier: start with a '
        'letter or "_", then use letters, digits, "_" or "-"',
    ),
    (
        "name-too-long",
        'task {\n  name = "' + "a" * 201 + '"\n  module = "m"\n'
        '  condition "services" { names = ["a"] }\n}\n',
        f'tasks/web.hcl:2: task "{"a" * 201}": name is longer than 200 bytes',
    ),
    (
        "condition-missing",
        'task {\n  name = "web"\n  module = "m"\n}\n',
        'tasks/web.hcl:1: task "web": a condition block is required, e.g. condition "services" '
        "{ names = [...] }",
    ),
    (
        "services-list-and-services-condition",
        'task {\n  name = "web"\n  module = "m"\n  services = ["a"]\n'
        '  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:4: task "web": the deprecated "services" list and condition "services" '
        "both monitor the services variable; remove the services list",
    ),
    (
        "module-missing",
        'task {\n  name = "web"\n  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:1: task "web": "module" is required',
    ),
    (
        "terraform-version-enterprise",
        'task {\n  name = "web"\n  module = "m"\n  terraform_version = "1.0.0"\n'
        '  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:4: task "web": "terraform_version" is an Enterprise feature: unsupported '
        "configuration (available with Consul-Terraform-Sync Enterprise)",
    ),
    (
        "tfc-workspace-enterprise",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" { names = ["a"] }\n'
        '  terraform_cloud_workspace {\n    execution_mode = "agent"\n  }\n}\n',
        'tasks/web.hcl:5: task "web": "terraform_cloud_workspace" is an Enterprise feature: '
        "unsupported configuration (available with Consul-Terraform-Sync Enterprise)",
    ),
    (
        "one-provider-instance",
        'task {\n  name = "web"\n  module = "m"\n  providers = ["aws", "aws.west"]\n'
        '  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:4: task "web": only one provider instance per task: "aws" and "aws.west" '
        'are both instances of provider "aws"',
    ),
    (
        "services-neither",
        'task {\n  name = "web"\n  module = "m"\n\n  condition "services" {\n'
        '    datacenter = "dc1"\n  }\n}\n',
        'tasks/web.hcl:5: task "web": condition "services": either "names" or "regexp" must be set',
    ),
    (
        "services-both",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" {\n'
        '    names = ["a"]\n    regexp = "^a"\n  }\n}\n',
        'tasks/web.hcl:4: task "web": condition "services": set either "names" or "regexp", '
        "not both",
    ),
    (
        "services-bad-regexp",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" {\n'
        '    regexp = "(("\n  }\n}\n',
        'tasks/web.hcl:5: task "web": condition "services": "regexp" is not a valid regular '
        "expression (RE2 syntax, as in Go): missing ): ((",
    ),
    (
        "services-regexp-repetition-too-large",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" {\n'
        '    regexp = "a{4294967296}"\n  }\n}\n',
        'tasks/web.hcl:5: task "web": condition "services": "regexp" is not a valid regular '
        "expression (RE2 syntax, as in Go): invalid repeat count: {4294967296} (at most 1000)",
    ),
    (
        "catalog-regexp-nested-too-deeply",
        'task {\n  name = "web"\n  module = "m"\n  condition "catalog-services" {\n'
        f'    regexp = "{"(" * 2000}{")" * 2000}"\n  }}\n}}\n',
        'tasks/web.hcl:5: task "web": condition "catalog-services": "regexp" is not a valid '
        "regular expression (RE2 syntax, as in Go): expression nests too deeply",
    ),
    (
        "services-empty-name",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" {\n'
        '    names = ["a", ""]\n  }\n}\n',
        'tasks/web.hcl:5: task "web": condition "services": "names" must not contain empty strings',
    ),
    (
        "catalog-regexp-required",
        'task {\n  name = "web"\n  module = "m"\n  condition "catalog-services" {\n'
        '    datacenter = "dc1"\n  }\n}\n',
        'tasks/web.hcl:4: task "web": condition "catalog-services": "regexp" must be set',
    ),
    (
        "consul-kv-path-required",
        'task {\n  name = "web"\n  module = "m"\n  condition "consul-kv" {\n'
        "    recurse = true\n  }\n}\n",
        'tasks/web.hcl:4: task "web": condition "consul-kv": "path" is required',
    ),
    (
        "schedule-cron-required",
        'task {\n  name = "web"\n  module = "m"\n  condition "schedule" {\n  }\n}\n',
        'tasks/web.hcl:4: task "web": condition "schedule": "cron" is required',
    ),
    (
        "schedule-cron-invalid",
        'task {\n  name = "web"\n  module = "m"\n  condition "schedule" {\n'
        '    cron = "61 * * * *"\n  }\n}\n',
        'tasks/web.hcl:5: task "web": condition "schedule": invalid cron expression '
        '"61 * * * *": minute field "61": values must be between 0 and 59',
    ),
    (
        "two-conditions",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" { names = ["a"] }\n'
        '  condition "services" { names = ["b"] }\n}\n',
        'tasks/web.hcl:5: task "web": expected only one condition block, found 2',
    ),
    (
        "unknown-condition-type",
        'task {\n  name = "web"\n  module = "m"\n  condition "consul_kv" { path = "a" }\n}\n',
        'tasks/web.hcl:4: task "web": unsupported condition type "consul_kv" (task files use '
        'hyphens: "consul-kv"); expected one of: "services", "catalog-services", "consul-kv", '
        '"schedule"',
    ),
    (
        "unknown-key-in-condition",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" {\n'
        '    names = ["a"]\n    nmaes = ["b"]\n  }\n}\n',
        'tasks/web.hcl:6: task "web": condition "services": invalid key "nmaes" (did you mean '
        '"names"?)',
    ),
    (
        "unknown-key-in-task",
        'task {\n  name = "web"\n  modul = "m"\n  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:3: task "web": invalid key "modul" (did you mean "module"?)',
    ),
    (
        "duplicate-module-input-type",
        'task {\n  name = "web"\n  module = "m"\n  condition "schedule" { cron = "@daily" }\n'
        '  module_input "services" { names = ["a"] }\n'
        '  module_input "services" { names = ["b"] }\n}\n',
        'tasks/web.hcl:6: task "web": module_input "services": more than one module_input block '
        'for the "services" variable; keep one',
    ),
    (
        "module-input-same-as-condition",
        'task {\n  name = "web"\n  module = "m"\n  condition "consul-kv" { path = "k" }\n'
        '  module_input "consul-kv" { path = "j" }\n}\n',
        'tasks/web.hcl:5: task "web": module_input "consul-kv": the condition block and this '
        'module_input both monitor the "consul_kv" variable; remove one',
    ),
    (
        "module-input-unknown-type",
        'task {\n  name = "web"\n  module = "m"\n  condition "consul-kv" { path = "k" }\n'
        '  module_input "schedule" { cron = "@daily" }\n}\n',
        'tasks/web.hcl:5: task "web": unsupported module_input type "schedule"; expected one of:'
        ' "services", "consul-kv"',
    ),
    (
        "module-input-services-validated",
        'task {\n  name = "web"\n  module = "m"\n  condition "consul-kv" { path = "k" }\n'
        '  module_input "services" {\n    filter = "x"\n  }\n}\n',
        'tasks/web.hcl:5: task "web": module_input "services": either "names" or "regexp" must '
        "be set",
    ),
    (
        "buffer-negative",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" { names = ["a"] }\n'
        '  buffer_period {\n    min = "-5s"\n  }\n}\n',
        'tasks/web.hcl:6: task "web": buffer_period: "min" cannot be negative',
    ),
    (
        "buffer-bad-duration",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" { names = ["a"] }\n'
        '  buffer_period {\n    max = "5 seconds"\n  }\n}\n',
        'tasks/web.hcl:6: task "web": buffer_period: "max": invalid duration "5 seconds": use Go '
        'syntax such as "5s" or "1m30s"',
    ),
    (
        "duplicate-attribute",
        'task {\n  name = "web"\n  module = "a"\n  module = "b"\n'
        '  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:4: task "web": duplicate attribute "module" (first set on line 3)',
    ),
    (
        "wrong-type",
        'task {\n  name = "web"\n  module = "m"\n  enabled = "yes"\n'
        '  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:4: task "web": "enabled" must be a bool (true or false), not string',
    ),
    (
        "duplicate-task-in-file",
        'task {\n  name = "web"\n  module = "m"\n  condition "services" { names = ["a"] }\n}\n'
        'task {\n  name = "web"\n  module = "n"\n  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:6: task "web": duplicate task name (first defined on line 1)',
    ),
    (
        "labelled-task",
        'task "web" {\n  module = "m"\n  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:1: block "task" takes no label, found 1',
    ),
    (
        "interpolation",
        'task {\n  name = "web"\n  module = "${var.x}"\n  condition "services" { names = ["a"] }\n'
        "}\n",
        "tasks/web.hcl:3:12: template interpolation (${...}) and directives (%{...}) are not "
        "allowed in task files; write $${ or %%{ for a literal",
    ),
    (
        "expression",
        'task {\n  name = "web"\n  module = upper("m")\n'
        '  condition "services" { names = ["a"] }\n}\n',
        'tasks/web.hcl:3:12: expected a literal value, not the expression `upper("m")`',
    ),
    (
        "hexadecimal-number",
        'task {\n  name = "web"\n  module = "m"\n  variables = { port = 0x50 }\n'
        '  condition "services" { names = ["a"] }\n}\n',
        "tasks/web.hcl:4:24: 0x50 is not a decimal number",
    ),
    (
        "number-too-large",
        'task {\n  name = "web"\n  module = "m"\n  variables = { big = 1.0e999 }\n'
        '  condition "services" { names = ["a"] }\n}\n',
        "tasks/web.hcl:4:23: the number 1.0e999 is too large",
    ),
    (
        "other-top-level-block",
        'terraform_provider "aws" {}\n',
        'tasks/web.hcl:1: invalid key "terraform_provider": task files hold only task blocks; '
        "provider blocks belong in the daemon configuration",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(text: str, expected: str) -> None:
    assert expected in problems(text)


SYNTAX = [
    ("missing-brace", 'task {\n  name = "web"\n', "tasks/web.hcl:3:1: syntax error"),
    ("missing-value", "task {\n  name = \n}\n", "tasks/web.hcl:"),
    ("binary", "\x00\x01\x02", "tasks/web.hcl:1: file contains NUL bytes"),
    (
        "hcl1-labelled-assignment",
        'task {\n  condition "services" = {\n    names = ["a"]\n  }\n}\n',
        '`condition "services" = {` is HCL1 syntax, not valid HCL2: write '
        '`condition "services" {` (no "=")',
    ),
    (
        "hcl1-multiline-string",
        'task {\n  name = "a\nb"\n}\n',
        "tasks/web.hcl:2:10: a quoted string cannot span lines in HCL2",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_syntax_error_names_file_line_column(text: str, expected: str) -> None:
    found = problems(text)
    assert len(found) == 1
    assert expected in found[0]


def test_not_utf8() -> None:
    found = [str(p) for p in load_task_file(b"task {\n \xff\xfe }", "t.hcl").problems]
    assert found == ["t.hcl:2: file is not valid UTF-8 text"]


def test_too_big_file_is_rejected_before_parsing() -> None:
    found = [str(p) for p in load_task_file(b"#" * (5 * 1024 * 1024), "big.hcl").problems]
    assert len(found) == 1 and "task files are limited to" in found[0]


def test_ten_thousand_attributes_give_a_bounded_report() -> None:
    body = "".join(f"  a{i} = {i}\n" for i in range(10_000))
    found = problems(
        f'task {{\n  name = "web"\n  module = "m"\n{body}'
        '  condition "services" { names = ["x"] }\n}\n'
    )
    assert len(found) == 21
    assert found[0] == 'tasks/web.hcl:4: task "web": invalid key "a0"'
    assert found[-1].endswith("... and 9980 more problems")


def test_json_task_file_problems_name_the_line() -> None:
    text = (
        '{\n  "task": [\n    {\n      "name": "web",\n      "module": "m",\n'
        '      "condition": {"services": {"datacenter": "x"}}\n    }\n  ]\n}\n'
    )
    found = problems(text, "tasks/web.json")
    assert found == [
        'tasks/web.json:6: task "web": condition "services": either "names" or "regexp" must be set'
    ]


def test_deprecated_fields_load_with_warnings() -> None:
    text = (
        'task {\n  name = "web"\n  source = "m"\n  services = ["api"]\n'
        '  condition "consul-kv" {\n    path = "k"\n    source_includes_var = false\n  }\n'
        '  source_input "consul-kv" {\n    path = "a"\n  }\n}\n'
    )
    loaded = load_task_file(text.encode(), "t.hcl")
    assert [str(p) for p in loaded.problems] == [
        't.hcl:9: task "web": module_input "consul-kv": the condition block and this '
        'module_input both monitor the "consul_kv" variable; remove one'
    ]
    text = text.replace(
        'condition "consul-kv" {\n    path = "k"\n',
        'condition "catalog-services" {\n    regexp = "k"\n',
    )
    loaded = load_task_file(text.encode(), "t.hcl")
    assert [str(p) for p in loaded.problems] == []
    spec = loaded.tasks[0].spec
    assert spec.module == "m"
    assert spec.services == ("api",)
    warnings = [str(w) for w in loaded.warnings]
    assert 't.hcl:3: task "web": "source" is deprecated: rename it to "module"' in warnings
    assert any('"source_input" is deprecated' in w for w in warnings)
    assert any('"source_includes_var" is deprecated' in w for w in warnings)


def test_variable_names_must_be_identifiers() -> None:
    text = (
        'task {\n  name = "web"\n  module = "m"\n  variables = {\n    "not ok" = 1\n  }\n'
        '  condition "services" { names = ["a"] }\n}\n'
    )
    assert problems(text) == [
        'tasks/web.hcl:4: task "web": "not ok" is not a valid variable name: start with a '
        'letter or "_", then use letters, digits, "_" or "-"'
    ]


def test_json_attribute_problems_name_the_attribute_line() -> None:
    text = (
        '{\n  "task": {\n    "name": "web",\n    "module": "m",\n    "enabled": "yes",\n'
        '    "condition": {"services": {"names": ["a"]}},\n'
        '    "bogus": {"x": [1, {"y": "}, {"}]}\n  }\n}\n'
    )
    assert problems(text, "tasks/web.json") == [
        'tasks/web.json:5: task "web": "enabled" must be a bool (true or false), not string',
        'tasks/web.json:7: task "web": invalid key "bogus"',
    ]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^web(?=-prod)", "invalid perl operator: (?="),  # Go has no look-around
        (r"(a)\1", r"invalid escape sequence: \1"),  # nor back-references
        ("a{1001}", "invalid repeat count"),
    ],
)
def test_a_pattern_go_refuses_is_a_file_error(pattern: str, why: str) -> None:
    text = (
        'task {\n  name = "web"\n  module = "m"\n  condition "services" {\n'
        f"    regexp = {json.dumps(pattern)}\n  }}\n}}\n"
    )
    [problem] = problems(text)
    assert problem.startswith('tasks/web.hcl:5: task "web": condition "services": "regexp"')
    assert why in problem


def test_go_patterns_python_lacks_are_accepted() -> None:
    # \z and \pL are Go (RE2) syntax, (?U) is Go's ungreedy flag.
    for pattern in (r"^web\z", r"^\pL+$", "(?U)a+"):
        text = (
            'task {\n  name = "web"\n  module = "m"\n  condition "services" {\n'
            f"    regexp = {json.dumps(pattern)}\n  }}\n}}\n"
        )
        assert problems(text) == []


@pytest.mark.parametrize("path", ["../acl/tokens", "app/../../acl", "./app", "app/."])
def test_a_consul_kv_path_with_dot_segments_is_refused(path: str) -> None:
    for block in (
        f'  condition "consul-kv" {{\n    path = "{path}"\n  }}\n',
        '  condition "schedule" {\n    cron = "* * * * *"\n  }\n'
        f'  module_input "consul-kv" {{\n    path = "{path}"\n  }}\n',
    ):
        text = f'task {{\n  name = "web"\n  module = "m"\n{block}}}\n'
        [problem] = problems(text)
        assert '"path" must not contain "." or ".." segments' in problem, problem
        assert problem.startswith("tasks/web.hcl:"), problem
