"""params.yaml and every preset validate against the stage parameter models (what `gradlab run` checks)."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT

from gradlab.config import load_yaml, validate_section
from gradlab.stages import all_stages

PRESETS = sorted((ROOT / "presets").glob("*.yaml"))


def test_params_yaml_sections_validate_and_cover_every_dvc_stage():
    params = load_yaml(ROOT / "params.yaml")
    stages = all_stages()
    for name, section in params.items():
        assert name in stages, f"params.yaml: {name} is not a stage"
        validate_section(name, stages[name].params, section)  # ConfigError names the key
    in_dvc = [s for s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"] if s in stages]
    assert [s for s in in_dvc if s not in params] == [], "a dvc.yaml stage without a params.yaml section"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_validates(preset):
    data = load_yaml(preset)
    stages = all_stages()
    assert data, f"{preset.name} is empty"
    for name, section in data.items():
        assert name in stages, f"{preset.name}: {name} is not a stage"
        validate_section(name, stages[name].params, section)


def test_there_are_presets():
    assert PRESETS


TUNE_SPACES = sorted((ROOT / "presets" / "tune").glob("*.yaml"))


@pytest.mark.parametrize("path", TUNE_SPACES, ids=lambda p: p.name)
def test_tune_space_validates_against_its_base_parameters(path):
    """Every committed search space reads, and every value it can produce passes the stage's parameter model on
    the base file its header names (the stage's preset where there is one, else params.yaml)."""
    from gradlab.tune.space import read, validate_against_stage

    space = read(path)
    base = ROOT / "presets" / f"{space.stage}.yaml"
    assert f"--params presets/{base.name}" in path.read_text() or not base.exists()
    validate_against_stage(space, (base if base.exists() else ROOT / "params.yaml").read_text())


def test_there_are_tune_spaces():
    assert TUNE_SPACES
