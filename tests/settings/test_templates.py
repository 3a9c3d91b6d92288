"""The template syntax of terraform_provider blocks: what CTS users write parses; anything
else is refused at load with file:line, never passed through as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler._core.errors import ConfigError
from reconciler.settings import load_settings
from reconciler.settings.templates import (
    Env,
    Field,
    Key,
    TemplateSyntaxError,
    Text,
    WithSecret,
    parse,
)


def test_the_forms_cts_documents() -> None:
    assert parse('{{ env "AWS_KEY" }}') == (Env("AWS_KEY"),)
    assert parse('{{ key "aws/token" }}') == (Key("aws/token"),)
    assert parse('{{ with secret "secret/data/aws" }}{{ .Data.data.key }}{{ end }}') == (
        WithSecret("secret/data/aws", (Field(("data", "key")),)),
    )
    assert parse("plain") == (Text("plain"),)


def test_text_trim_markers_and_several_fields() -> None:
    nodes = parse(
        'user-{{- env "U" -}} :{{ with secret `kv/app` }}{{ .Data.user }}/{{ .Data.pass }}'
        "{{ end }}!"
    )
    assert nodes == (
        Text("user-"),
        Env("U"),
        Text(":"),
        WithSecret("kv/app", (Field(("user",)), Text("/"), Field(("pass",)))),
        Text("!"),
    )
    assert parse(r'{{ env "A\"B" }}') == (Env('A"B'),)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{{ env "X" | toLower }}', "unsupported template action"),
        ("{{ range .Data }}{{ end }}", "unsupported template action"),
        ("{{ .Data.x }}", "outside a {{ with secret"),
        ('{{ with secret "a" }}{{ .LeaseID }}{{ end }}', "only fields of the secret's data"),
        ('{{ with secret "a" }}x', "without its {{ end }}"),
        ("{{ end }}", "without an open"),
        ('{{ with secret "pki/issue/x" "common_name=a" }}{{ end }}', "a Vault write"),
        ('{{ env "X"', "unclosed action"),
        ('{{ file "/etc/passwd" }}', "unsupported template action"),
        ('{{ key "../acl/tokens" }}', '"." and ".." segments are not allowed'),
        ('{{ key "app/./x" }}', '"." and ".." segments are not allowed'),
        ('{{ with secret "secret/../sys/raw" }}{{ end }}', '"." and ".." segments'),
    ],
)
def test_anything_else_is_refused(template: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError, match=message):
        parse(template)


def test_a_bad_template_is_a_load_error_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "cts.hcl"
    config.write_text(
        'terraform_provider "aws" {\n'
        '  region = "eu-west-1"\n'
        '  access_key = "{{ env \\"K\\" | trim }}"\n'
        "}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings([config])
    [problem] = info.value.problems
    assert problem.location is not None and problem.location.line == 3
    assert '"access_key": unsupported template action' in str(problem)


def test_good_templates_load_and_keep_their_lines(tmp_path: Path) -> None:
    config = tmp_path / "cts.hcl"
    config.write_text(
        'terraform_provider "aws" {\n'
        '  region = "eu-west-1"\n'
        '  access_key = "{{ env \\"K\\" }}"\n'
        "  task_env = {\n"
        '    TOKEN = "{{ key \\"aws/token\\" }}"\n'
        "  }\n"
        "}\n"
    )
    [aws] = load_settings([config]).terraform_providers
    assert aws.where("access_key").line == 3 and aws.where("task_env").line == 4


def test_auto_commit_is_a_warning_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "cts.hcl"
    config.write_text('terraform_provider "panos" {\n  auto_commit = true\n}\n')
    [warning] = load_settings([config]).warnings
    assert warning.location is not None and warning.location.line == 2
    assert '"auto_commit" is not supported' in str(warning)
