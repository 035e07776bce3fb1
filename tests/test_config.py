"""Parameter validation: one line naming the key path and what is allowed."""

from __future__ import annotations

import pytest

from gradlab.config import ConfigError, apply_overrides, load_yaml, parse_assignment
from gradlab.runner import resolve_params


@pytest.fixture
def params_file(tmp_path):
    from conftest import tiny_params

    return tiny_params(tmp_path, "gd")


@pytest.mark.parametrize(
    "override, key, fragment",
    [
        ("gd.bogus=1", "gd.bogus", "unknown key; allowed keys:"),
        ("gd.lr_grid.min=-1", "gd.lr_grid.min", "greater than 0"),
        ("gd.lr_grid.min=0", "gd.lr_grid.min", "greater than 0"),
        ("gd.lr_grid.min=20", "gd.lr_grid", "must be smaller than max"),
        ("gd.seeds=0", "gd.seeds", "greater than or equal to 1"),
        ("gd.seeds=two", "gd.seeds", "valid integer"),
        ("gd.seeds=2.5", "gd.seeds", "valid integer"),
        ("gd.rules.names=[gradient,bogus]", "gd.rules.names.1", "must be one of"),
        ("gd.rules.names=[]", "gd.rules.names", "at least 1"),
        ("gd.lr_grid.max=nan", "gd.lr_grid.max", "finite"),
        ("gd.lr_grid.max=inf", "gd.lr_grid.max", "finite"),
        ("gd.quadratic={n: 10000000, d: 5000}", "gd.quadratic", "GiB"),
        ("gd.quadratic=3", "gd.quadratic", "valid dictionary"),
        ("gd.seeds.x=1", "gd.seeds", "is a value, not a section"),
        ("mdn.x=1", "mdn.x", "must start with the stage name"),
    ],
)
def test_bad_override_names_key(params_file, override, key, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_params("gd", [override], params_file)
    assert err.value.key == key
    assert fragment in err.value.message
    assert "\n" not in str(err.value)


def test_good_override_is_applied(params_file):
    p = resolve_params("gd", ["gd.lr_grid.min=1e-4", "gd.rules.names=[gradient]"], params_file)
    assert p.lr_grid.min == 1e-4
    assert p.rules.names == ["gradient"]


def test_missing_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("other: {}\n")
    with pytest.raises(ConfigError, match=r"^gd: section is missing"):
        resolve_params("gd", [], path)


def test_unknown_stage(params_file):
    with pytest.raises(ConfigError, match="unknown stage 'nope'; allowed: .*gd"):
        resolve_params("nope", [], params_file)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("gd:\n  seed: 0\n  seeds: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(path) in err.value.key and ":4:" in err.value.key
    assert "malformed YAML" in err.value.message


def test_scientific_notation_is_a_float():
    assert parse_assignment("a.b=1e-3") == (["a", "b"], 0.001)
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}


def test_override_needs_equals():
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_assignment("gd.seed")
