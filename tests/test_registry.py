"""The registry is complete: each algorithm has its folder, export, yml, docs page and a known baseline."""

import importlib.util
import inspect
from pathlib import Path

import pytest

import sb3_pgx
from sb3_pgx.registry import ALGORITHMS, get

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda algorithm: algorithm.name)
def test_every_registered_algorithm_has_its_pieces(algorithm):
    cls = algorithm.cls
    assert getattr(sb3_pgx, cls.__name__) is cls and cls.__name__ in sb3_pgx.__all__
    assert cls.__module__.startswith(f"sb3_pgx.{algorithm.name}.")  # its folder is its zoo name
    assert (REPO / "hyperparams" / f"{algorithm.name}.yml").is_file()
    page = (REPO / "docs" / "algorithms" / f"{algorithm.name}.md").read_text()
    assert "<!-- params:start -->" in page
    parameters = inspect.signature(cls.__init__).parameters
    assert set(algorithm.fast_kwargs) <= set(parameters)
    assert set(algorithm.argument_ranges) <= set(parameters)
    model = cls("MlpPolicy", "CartPole-v1", **algorithm.fast_kwargs, device="cpu")
    assert all(hasattr(model, name) for name in algorithm.state_attrs)


def test_baselines_are_rl_zoo3_algorithms():
    utils = pytest.importorskip("rl_zoo3.utils")
    assert all(algorithm.baseline in utils.ALGOS for algorithm in ALGORITHMS)


def test_names_are_unique_and_lookup_refuses_an_unknown_one():
    names = [algorithm.name for algorithm in ALGORITHMS]
    assert len(set(names)) == len(names) == len({algorithm.cls for algorithm in ALGORITHMS})
    assert get("npg").cls is sb3_pgx.NaturalPG
    with pytest.raises(ValueError, match="algo='nope'"):
        get("nope")


def test_docs_parameter_tables_are_current():
    """``python docs/gen_params.py`` would change nothing: each page's table is its class's signature and docstring."""
    spec = importlib.util.spec_from_file_location("gen_params", REPO / "docs" / "gen_params.py")
    gen_params = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_params)
    for algorithm in ALGORITHMS:
        page = (REPO / "docs" / "algorithms" / f"{algorithm.name}.md").read_text()
        table = gen_params.params_table(algorithm.cls)
        assert f"{gen_params.START}\n{table}\n{gen_params.END}" in page, f"run python docs/gen_params.py ({algorithm.name})"
