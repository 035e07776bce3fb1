"""pg's modules import each other without a cycle; envs.py is a leaf; the LightningModule has one collector.

Read from the source (every import, those inside functions too, except ``if TYPE_CHECKING:`` blocks, which
never run), so a lazy import that closes a cycle counts as much as a top-level one.
"""

from __future__ import annotations

import ast

import pytest
from conftest import ROOT

PG = ROOT / "src" / "gradlab" / "studies" / "pg"
PACKAGE = "gradlab.studies.pg"


def _tree(name: str) -> ast.Module:
    tree = ast.parse((PG / f"{name}.py").read_text())
    for block in ast.walk(tree):
        if isinstance(block, ast.If) and getattr(block.test, "id", getattr(block.test, "attr", "")) == "TYPE_CHECKING":
            block.body = []
    return tree


def pg_imports(name: str) -> set[str]:
    """The pg modules that ``pg/<name>.py`` imports anywhere (``from gradlab.studies.pg import x`` included)."""
    modules = {p.stem for p in PG.glob("*.py")}
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[3] for a in node.names if a.name.startswith(f"{PACKAGE}.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith(f"{PACKAGE}."):
                found.add(node.module.split(".")[3])
            elif node.module == PACKAGE:
                found |= {a.name for a in node.names if a.name in modules}
    return found - {"__init__"}


def graph() -> dict[str, set[str]]:
    return {p.stem: pg_imports(p.stem) for p in PG.glob("*.py") if p.stem != "__init__"}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_pg_has_no_import_cycle():
    edges = graph()
    assert {"envs", "stream", "rollout", "module", "trial"} <= set(edges)
    assert find_cycle(edges) is None, f"import cycle in {PACKAGE}: {' -> '.join(find_cycle(edges))}"


def test_envs_is_a_leaf_and_rollout_owns_the_collectors():
    assert pg_imports("envs") == set()
    assert pg_imports("stream") == {"envs"}
    assert {"envs", "stream"} <= pg_imports("rollout")
    assert not {"envs", "stream"} & pg_imports("module")  # it collects through rollout.py only


def test_module_has_no_branch_on_the_collector_type():
    names = {
        node.func.id
        for node in ast.walk(_tree("module"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "isinstance" not in names


def test_module_builds_no_trainer_and_keeps_no_checkpoint_or_run():
    """The LightningModule defines the model, its loss and optimiser; the Trainer, the stop rules, the checkpoint
    format and the MLflow run are the training loop's (loop.py)."""
    source = (PG / "module.py").read_text()
    called = {
        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for node in ast.walk(_tree("module"))
        if isinstance(node, ast.Call)
    }
    assert not {"Trainer", "make_trainer", "make_fabric", "fit", "Fabric"} & called
    assert not {"save", "load"} & called  # no torch.save / torch.load: no checkpoint format of its own
    assert "gradlab.training import fit" not in source and "should_stop" not in source
    for word in ("run_id", "save_checkpoint", "load_checkpoint", "get_rng_state", "stopped_at_game", "mlflow"):
        assert word not in source, word
    assert "Trainer(" not in source


@pytest.mark.parametrize("stage", ["pg_cartpole", "pg_pong"])
def test_the_stage_models_defaults_are_params_yaml(stage):
    """Defaults in one place: the model's defaults are params.yaml's section (every key listed there), so a
    partial parameter file (a study's tiny.yaml, --quick, a sweep's --set) starts from what `dvc repro` runs."""
    from gradlab.config import load_yaml, validate_section
    from gradlab.stages import all_stages

    model = all_stages()[stage].params
    section = load_yaml(ROOT / "params.yaml")[stage]
    assert set(section) == set(model.model_fields)
    assert model().model_dump() == validate_section(stage, model, section).model_dump()
