"""The registry and factory: listing, building, errors, duplicates, entry-point plug-ins."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import pyvae
from pyvae.models import MLPVAE, MODELS


def test_list_models_sorted_with_builtins_and_wildcard() -> None:
    names = pyvae.list_models()
    assert names == sorted(names)
    assert {"mlp", "conv", "denoising"} <= set(names)
    assert pyvae.list_models("c*") == [n for n in names if n.startswith("c")]
    assert pyvae.list_models("no-such-*") == []


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(pyvae.UnknownNameError) as info:
        pyvae.build("cnov")
    message = str(info.value)
    assert "Unknown model 'cnov'" in message
    assert "Did you mean 'conv'?" in message
    assert "Available models: " in message and "conv, denoising, " in message
    assert isinstance(info.value, ValueError)


def test_unknown_name_without_close_match_lists_models() -> None:
    with pytest.raises(ValueError, match="Available models: .*mlp") as info:
        pyvae.build("transformer")
    assert "Did you mean" not in str(info.value)


def test_unknown_component_names() -> None:
    with pytest.raises(pyvae.UnknownNameError, match="Unknown likelihood 'bernouli'.*'bernoulli'"):
        pyvae.build("mlp", likelihood="bernouli")
    with pytest.raises(pyvae.UnknownNameError, match="Unknown prior 'nromal'.*'normal'"):
        pyvae.build("mlp", prior="nromal")


def test_duplicate_name_is_refused_unless_overwrite() -> None:
    with MODELS.scoped():

        @pyvae.register_model("test-dup", overwrite=False)
        class First(MLPVAE):
            pass

        with pytest.raises(ValueError, match="'test-dup' is already registered"):

            @pyvae.register_model("test-dup")
            class Other(MLPVAE):
                pass

        @pyvae.register_model("test-dup", overwrite=True)
        class Second(MLPVAE):
            pass

        assert MODELS.get("test-dup") is Second
        assert Second.registered_name == "test-dup"
        assert First.registered_name is None  # replaced: it no longer answers to the name
    assert "test-dup" not in MODELS


@pytest.mark.parametrize("overwrite", [False, True])
def test_builtin_names_cannot_be_replaced(overwrite: bool) -> None:
    with pytest.raises(ValueError, match="'mlp' is a built-in name .* cannot be replaced"):

        @pyvae.register_model("mlp", overwrite=overwrite)
        class Other(MLPVAE):
            pass

    assert MODELS.get("mlp") is MLPVAE
    with pytest.raises(ValueError, match="built-in name"):
        pyvae.LIKELIHOODS.unregister("bernoulli")
    assert "bernoulli" in pyvae.LIKELIHOODS


def test_subclasses_do_not_inherit_the_registered_name() -> None:
    class Mine(MLPVAE):
        pass

    assert MLPVAE.registered_name == "mlp"
    assert Mine.registered_name is None
    assert Mine(input_shape=(4,), hidden_dims=(8,)).config["name"] is None
    with MODELS.scoped():
        pyvae.register_model("mine")(Mine)
        assert Mine.registered_name == "mine"
        assert pyvae.build("mine", input_shape=(4,), hidden_dims=(8,)).config["name"] == "mine"
    assert Mine.registered_name is None and "mine" not in MODELS


def test_unregister_and_scoped_restore_everything() -> None:
    before = pyvae.list_models()

    class A(MLPVAE):
        pass

    with MODELS.scoped():
        pyvae.register_model("a-1")(A)
        pyvae.register_model("a-2")(A)  # a second name: the first stays the class's own
        assert A.registered_name == "a-1"
        assert MODELS.unregister("a-1") is A
        assert A.registered_name == "a-2"
        with pytest.raises(pyvae.UnknownNameError, match="Unknown model 'a-1'"):
            MODELS.unregister("a-1")
        assert MODELS.unregister("a-2") is A and A.registered_name is None
        pyvae.register_model("a-3")(A)
    assert pyvae.list_models() == before
    assert A.registered_name is None
    assert [1] not in MODELS  # an unhashable name is simply not there


def test_register_requires_a_model_class() -> None:
    with pytest.raises(TypeError, match="expected a subclass of BaseVAE"):
        pyvae.register_model("not-a-model")(dict)


def test_none_keywords_are_dropped_so_defaults_hold() -> None:
    model = pyvae.build("mlp", latent_dim=None, hidden_dims=(8,), input_shape=(5,))
    assert model.latent_dim == MLPVAE().latent_dim


def test_build_from_config_dict_and_keyword_override() -> None:
    model = pyvae.build("mlp", input_shape=(6,), latent_dim=3, hidden_dims=(8,))
    rebuilt = pyvae.build(model.config, latent_dim=5)
    assert rebuilt.latent_dim == 5 and rebuilt.input_shape == (6,)
    with pytest.raises(pyvae.ConfigError, match="'name' key"):
        pyvae.build({"latent_dim": 2})


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"latent_dim": -1}, r"latent_dim: expected a positive integer, got -1"),
        ({"latent_dim": 2.5}, r"latent_dim: expected a positive integer, got 2.5"),
        ({"latnet_dim": 3}, r"unknown argument 'latnet_dim'. Did you mean 'latent_dim'\?"),
        ({"input_shape": (784,)}, r"conv model expects images \(C, H, W\), got \(784,\)"),
        ({"input_shape": (1, 0, 28)}, r"input_shape: expected a non-empty sequence of positive"),
        ({"channels": ()}, r"channels: expected a non-empty sequence of positive integers"),
        ({"batch_norm": "yes"}, r"batch_norm: expected a bool, got 'yes'"),
    ],
)
def test_bad_config_fails_at_build_time(config: dict[str, object], pattern: str) -> None:
    with pytest.raises(pyvae.ConfigError, match=pattern):
        pyvae.build("conv", **config)


def test_bad_component_config() -> None:
    with pytest.raises(pyvae.ConfigError, match="scale: expected a positive finite number"):
        pyvae.build("mlp", likelihood={"name": "gaussian", "scale": 0.0})
    with pytest.raises(pyvae.ConfigError, match="std: expected a finite number >= 0"):
        pyvae.build("denoising", corruption={"name": "gaussian", "std": -1.0})
    with pytest.raises(pyvae.ConfigError, match="p: expected a probability in"):
        pyvae.build("denoising", corruption={"name": "masking", "p": 1.5})


def _install_plugin(
    tmp_path: Path, dist: str, module: str, source: str, entry: str, group: str = "pyvae.models"
) -> None:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    info = tmp_path / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")


@pytest.fixture
def plugin_path(tmp_path: Path):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("tiny", "broken-plugin-model"):
            if name in MODELS:
                MODELS.unregister(name)
        for module in ("pyvae_tiny_plugin", "pyvae_broken_plugin"):
            sys.modules.pop(module, None)
        MODELS.reload_plugins()


def test_entry_point_plugin_registers_a_model(plugin_path: Path) -> None:
    _install_plugin(
        plugin_path,
        "pyvae-tiny-plugin",
        "pyvae_tiny_plugin",
        """
        import pyvae

        @pyvae.register_model("tiny")
        class TinyVAE(pyvae.MLPVAE):
            def __init__(self, input_shape=(4,), latent_dim=2):
                super().__init__(input_shape=input_shape, latent_dim=latent_dim, hidden_dims=(8,))
        """,
        "tiny = pyvae_tiny_plugin",
    )
    MODELS.reload_plugins()
    assert "tiny" in pyvae.list_models()
    model = pyvae.build("tiny")
    assert model(torch.rand(3, 4)).params.shape == (3, 4)
    assert model.config["name"] == "tiny"


def test_broken_plugin_warns_and_never_breaks_pyvae(plugin_path: Path) -> None:
    _install_plugin(
        plugin_path,
        "pyvae-broken-plugin",
        "pyvae_broken_plugin",
        "raise ImportError('this plug-in needs a package that is not installed')\n",
        "broken = pyvae_broken_plugin",
    )
    with pytest.warns(RuntimeWarning, match="could not load model plug-in 'broken'.*not installed"):
        MODELS.reload_plugins()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "mlp" in pyvae.list_models()
        pyvae.build("mlp", input_shape=(4,), hidden_dims=(8,))


@pytest.mark.parametrize(
    "failure",
    [
        "raise SystemExit(3)",
        "raise RuntimeError('boom')",
        "import sys; sys.exit('bye')",
        "raise GeneratorExit()",
        "@pyvae.register_model('mlp')\nclass M(pyvae.MLPVAE): pass",
    ],
)
def test_failing_plugin_is_skipped_and_rolled_back(plugin_path: Path, failure: str) -> None:
    _install_plugin(
        plugin_path,
        "pyvae-broken-plugin",
        "pyvae_broken_plugin",
        "import pyvae\n\n"
        "@pyvae.register_model('broken-plugin-model')\n"
        "class B(pyvae.MLPVAE):\n    pass\n\n"
        "@pyvae.register_prior('broken-plugin-prior')\n"
        "class P(pyvae.StandardNormalPrior):\n    pass\n\n" + failure + "\n",
        "broken = pyvae_broken_plugin",
    )
    with pytest.warns(RuntimeWarning, match="could not load model plug-in 'broken'.*removed"):
        MODELS.reload_plugins()
    # whatever it registered before failing is gone, in every registry
    assert "broken-plugin-model" not in pyvae.list_models()
    assert "broken-plugin-prior" not in pyvae.list_priors()
    assert MODELS.get("mlp") is MLPVAE
    pyvae.build("mlp", input_shape=(4,), hidden_dims=(8,))


def test_keyboard_interrupt_in_a_plugin_is_not_swallowed(plugin_path: Path) -> None:
    _install_plugin(
        plugin_path,
        "pyvae-broken-plugin",
        "pyvae_broken_plugin",
        "raise KeyboardInterrupt\n",
        "broken = pyvae_broken_plugin",
    )
    with pytest.raises(KeyboardInterrupt):
        MODELS.reload_plugins()


def test_a_class_cannot_claim_another_name() -> None:
    class Spoof(MLPVAE):
        registered_name = "mlp"  # written in the class body, not given by the registry

    with MODELS.scoped():
        pyvae.register_model("spoof")(Spoof)
        assert Spoof.registered_name == "spoof"
        assert pyvae.build("spoof", input_shape=(4,), hidden_dims=(8,)).config["name"] == "spoof"


def test_careless_build_arguments_get_clear_errors() -> None:
    with pytest.raises(pyvae.ConfigError, match="expected string keys .argument names., got 1"):
        pyvae.build({"name": "mlp", 1: 2})
    with pytest.raises(TypeError, match="pattern: expected an fnmatch wildcard string"):
        pyvae.list_models(5)  # type: ignore[arg-type]
    with pytest.raises(MemoryError, match=r"model 'mlp': not enough memory .*hidden_dims"):
        pyvae.build("mlp", input_shape=(4,), hidden_dims=[10**12])
