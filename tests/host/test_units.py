"""Unit tests of the host's pure pieces: templates, settings, reserved routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.funchost.host import (
    HostError,
    is_reserved_route,
    load_local_settings,
    resolve_setting_refs,
    template_to_rules,
)

# -- template_to_rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "rules"),
    [
        ("sys/health", [("/sys/health", {})]),
        ("/sys/health/", [("/sys/health", {})]),
        ("items/{id}", [("/items/<id>", {})]),
        ("typed/{id:int}", [("/typed/<int:id>", {})]),
        ("big/{n:long}", [("/big/<long:n>", {})]),
        ("g/{g:guid}", [("/g/<guid:g>", {})]),
        ("a/{x:alpha}", [("/a/<alpha:x>", {})]),
        ("f/{flag:bool}", [("/f/<bool:flag>", {})]),
        ("hello/{name?}", [("/hello/<name>", {}), ("/hello", {})]),
        ("n/{id:int?}", [("/n/<int:id>", {}), ("/n", {})]),
        ("files/{*rest}", [("/files/<path:rest>", {}), ("/files", {"rest": ""})]),
        ("{*route}", [("/<path:route>", {}), ("/", {"route": ""})]),
        ("{mount}/key/{name}", [("/<mount>/key/<name>", {})]),
        ("", [("/", {})]),
    ],
)
def test_template_to_rules(template: str, rules: list[tuple[str, dict[str, str]]]) -> None:
    assert template_to_rules(template) == rules


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("files/{*rest}/more", "catch-all parameter must be last"),
        ("items/{id:regex}", "unsupported route constraint"),
        ("items/{id}.json", "unsupported route segment"),
        ("items/{a}{b}", "unsupported route segment"),
    ],
)
def test_template_to_rules_rejects(template: str, message: str) -> None:
    with pytest.raises(HostError, match=message):
        template_to_rules(template)


# -- resolve_setting_refs ---------------------------------------------------------------------


def test_resolve_setting_refs() -> None:
    env = {"SCHED": "0 */5 * * * *", "A": "1", "B": "2"}
    assert resolve_setting_refs("%SCHED%", env) == "0 */5 * * * *"
    assert resolve_setting_refs("x%A%y%B%z", env) == "x1y2z"
    assert resolve_setting_refs("no refs", env) == "no refs"
    assert resolve_setting_refs("", env) == ""


def test_resolve_setting_refs_missing_setting() -> None:
    with pytest.raises(HostError, match=r"'MISSING' \(referenced as %MISSING%\) is not set"):
        resolve_setting_refs("%MISSING%", {})


def test_resolve_setting_refs_does_not_recurse() -> None:
    assert resolve_setting_refs("%A%", {"A": "%B%", "B": "x"}) == "%B%"


# -- load_local_settings ----------------------------------------------------------------------


def write_settings(path: Path, values: object) -> Path:
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def test_local_settings_values_are_applied(tmp_path: Path) -> None:
    path = write_settings(
        tmp_path / "local.settings.json",
        {"FUNCTIONS_WORKER_RUNTIME": "python", "TEST_SCHEDULE": "* * * * * *", "N": 5},
    )
    environ: dict[str, str] = {}
    applied = load_local_settings(path, environ)
    assert environ == {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "TEST_SCHEDULE": "* * * * * *",
        "N": "5",
    }
    assert applied == environ


def test_local_settings_environment_wins(tmp_path: Path) -> None:
    path = write_settings(tmp_path / "local.settings.json", {"A": "from-file", "B": "file"})
    environ = {"A": "from-env", "OTHER": "x"}
    applied = load_local_settings(path, environ)
    assert environ == {"A": "from-env", "B": "file", "OTHER": "x"}
    assert applied == {"B": "file"}


def test_local_settings_missing_file_or_values(tmp_path: Path) -> None:
    environ = {"A": "1"}
    assert load_local_settings(tmp_path / "absent.json", environ) == {}
    (tmp_path / "empty.json").write_text("{}")
    assert load_local_settings(tmp_path / "empty.json", environ) == {}
    assert environ == {"A": "1"}


# -- reserved routes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "reserved"),
    [
        ("admin", True),
        ("admin/x", True),
        ("/Admin/x", True),
        ("administration/health", True),  # the real host tests a plain prefix
        ("runtime/webhooks/x", True),
        ("sys/admin", False),
        ("runtimes", False),
        ("keymgmt/key", False),
    ],
)
def test_is_reserved_route(route: str, reserved: bool) -> None:
    assert is_reserved_route(route) is reserved


# -- inline constraints -----------------------------------------------------------------------

GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize(
    ("path", "values"),
    [
        ("/int/-12", {"v": "-12"}),
        ("/int/007", {"v": "007"}),
        ("/int/1.5", None),
        ("/alpha/abc", {"v": "abc"}),
        ("/alpha/ab1", None),
        ("/bool/True", {"v": "True"}),
        ("/bool/yes", None),
        (f"/guid/{GUID}", {"v": GUID}),
        (f"/guid/{GUID.replace('-', '')}", {"v": GUID.replace("-", "")}),
        ("/guid/not-a-guid", None),
    ],
)
def test_constraints_check_the_segment_and_keep_the_raw_string(
    path: str, values: dict[str, str] | None
) -> None:
    from werkzeug.exceptions import NotFound
    from werkzeug.routing import Map, Rule

    from tools.funchost.host import _CONVERTERS

    rules = [
        Rule(rule, endpoint=rule)
        for name in _CONVERTERS
        for rule, _ in template_to_rules(f"{name}/{{v:{name}}}")
    ]
    adapter = Map(rules, converters=_CONVERTERS).bind("localhost")
    if values is None:
        with pytest.raises(NotFound):
            adapter.match(path)
    else:
        assert adapter.match(path)[1] == values
