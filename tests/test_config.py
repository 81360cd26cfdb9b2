"""Profiles: strict YAML, typed validation with file and line, extends, environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpctl import paths
from helpctl.config.profiles import load_profile, normalise_labels, profile_paths
from helpctl.errors import ConfigError


def write_profile(name: str, text: str) -> Path:
    folder = paths.user_profiles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_profiles_load():
    sandbox = load_profile("sandbox")
    production = load_profile("fluidattacks")

    assert sandbox.is_sandbox
    assert sandbox.platform.fixed_token == "sandbox-platform-token"
    assert production.platform.url == "https://app.fluidattacks.com/api"
    assert production.gitlab.project == "fluidattacks/universe"
    assert production.labels["bug"] == ["type::bug"]
    assert production.labels["feature"] == ["type::feature"]
    assert production.platform.fixed_token is None
    assert not production.is_sandbox


def test_default_profile_is_sandbox():
    assert load_profile(None).name == "sandbox"


def test_environment_selects_profile(monkeypatch):
    monkeypatch.setenv("HELPCTL_PROFILE", "fluidattacks")
    assert load_profile(None).name == "fluidattacks"


def test_duplicate_key_names_both_lines():
    path = write_profile("dup", "gitlab:\n  project: support/triage\ngitlab:\n  project: support/sandbox\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("dup")

    assert f"{path}:3" in caught.value.message
    assert "duplicate key 'gitlab'" in caught.value.message
    assert "line 1" in caught.value.message


def test_tab_indentation_names_line():
    path = write_profile("tabs", "gitlab:\n\tproject: x\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("tabs")

    assert caught.value.message == f"{path}:2:1: tab characters are not allowed for indentation"


def test_unknown_key_suggests_fix():
    path = write_profile("typo", "version: 1\ngitlab:\n  projcet: a/b\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("typo")

    assert caught.value.message.startswith(f"{path}:3: gitlab.projcet: unknown key")
    assert caught.value.hint == "did you mean 'project'?"


def test_wrong_type_names_line():
    path = write_profile("types", "platform:\n  retries: many\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("types")

    assert f"{path}:2" in caught.value.message
    assert "expected a whole number" in caught.value.message


def test_syntax_error_is_one_line():
    path = write_profile("broken", "platform: [unclosed\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("broken")

    assert caught.value.message.startswith(f"{path}:")
    assert "\n" not in caught.value.message


def test_unsafe_tags_rejected():
    write_profile("unsafe", "description: !!python/object/apply:os.system ['true']\n")

    with pytest.raises(ConfigError):
        load_profile("unsafe")


def test_fixed_token_only_on_loopback():
    write_profile("leaky", "platform:\n  url: https://app.fluidattacks.com/api\n  fixed_token: abc\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("leaky")

    assert "fixed_token is allowed only for loopback" in caught.value.message


def test_plain_http_rejected_off_loopback():
    write_profile("plain", "gitlab:\n  url: http://gitlab.example.com\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("plain")

    assert "must use https" in caught.value.message


def test_extends_overrides_key_by_key():
    write_profile("mine", "extends: fluidattacks\nrouting:\n  head_of_product: jhead\n")

    profile = load_profile("mine")

    assert profile.routing.head_of_product == "jhead"
    assert profile.platform.url == "https://app.fluidattacks.com/api"
    assert profile.name == "mine"


def test_extends_cycle_rejected():
    write_profile("loop-a", "extends: loop-b\n")
    write_profile("loop-b", "extends: loop-a\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("loop-a")

    assert "extends itself" in caught.value.message


def test_environment_overrides_profile(monkeypatch):
    monkeypatch.setenv("HELPCTL_PLATFORM_URL", "http://127.0.0.1:9999/api")
    monkeypatch.setenv("HELPCTL_GITLAB_MAX_RETRIES", "1")

    profile = load_profile("sandbox")

    assert profile.platform.url == "http://127.0.0.1:9999/api"
    assert profile.gitlab.max_retries == 1


def test_environment_cannot_set_fixed_token(monkeypatch):
    monkeypatch.setenv("HELPCTL_PLATFORM_FIXED_TOKEN", "from-env")
    assert load_profile("sandbox").platform.fixed_token == "sandbox-platform-token"


def test_user_profile_hides_shipped():
    path = write_profile("sandbox", "description: mine\n")
    assert profile_paths()["sandbox"] == path


def test_missing_profile_lists_available():
    with pytest.raises(ConfigError) as caught:
        load_profile("nope")

    assert "available: fluidattacks, sandbox" in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bug", ["bug"]),
        ("Bug, customer-reported", ["Bug", "customer-reported"]),
        (["type::bug", " spaced "], ["type::bug", "spaced"]),
        ([], []),
        (None, []),
    ],
)
def test_labels_normalised(value, expected):
    assert normalise_labels(value, "here") == expected


def test_label_with_comma_rejected():
    with pytest.raises(ConfigError) as caught:
        normalise_labels(["area: db,cache"], "profile.yaml:3")

    assert "contains a comma" in caught.value.message


def test_string_labels_not_split_per_character():
    write_profile("strlabels", "labels:\n  bug: \"Bug,customer-reported\"\n")
    assert load_profile("strlabels").labels["bug"] == ["Bug", "customer-reported"]


def test_unknown_label_class_rejected():
    path = write_profile("badclass", "labels:\n  question: [x]\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("badclass")

    assert f"{path}:2" in caught.value.message


def test_invalid_rule_names_line():
    path = write_profile(
        "badrule",
        "classify:\n  rules:\n    - name: r\n      label: bug\n      when: {signal: platform.x, between: 3}\n",
    )

    with pytest.raises(ConfigError) as caught:
        load_profile("badrule")

    assert f"{path}:5" in caught.value.message
    assert "rule 'r'" in caught.value.message


def test_rule_label_must_be_known():
    write_profile("badlabel", "classify:\n  rules:\n    - {name: r, label: urgent, when: {case: kind, equals: x}}\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("badlabel")

    assert "invalid value 'urgent'" in caught.value.message


def test_missing_base_profile_names_extends_line():
    path = write_profile("mine", "description: x\nextends: sandbx\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("mine")

    assert caught.value.message.startswith(f"{path}:2: extends: profile 'sandbx' not found")


def test_engineer_email_checked():
    path = write_profile("noemail", "engineer:\n  email: new.user@fluidattacks\n")

    with pytest.raises(ConfigError) as caught:
        load_profile("noemail")

    assert caught.value.message.startswith(f"{path}:1: engineer: email 'new.user@fluidattacks'")
    assert "is not an e-mail address" in caught.value.message
