"""The playground (``pyvae playground``): its logic (pyvae.app.core) against independent numpy
computations, and its Streamlit page through Streamlit's headless AppTest: every panel renders
for each kind of model, moving a slider changes the decoded image, bad files give a message.

The browser test (a real server driven by headless Chromium) is in test_app_browser.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny import tiny_model

import pyvae
from pyvae.app import Playground, PlaygroundError, core
from pyvae.app.server import PAGE, streamlit_command
from pyvae.cli import main

N_EVAL = 48  # evaluation images the tiny runs use (the run's eval_limit)
DIGITS = [str(i) for i in range(10)]


def write_run(
    folder: Path,
    name: str,
    *,
    latent_dim: int = 3,
    data: dict[str, Any] | None = None,
    **build: Any,
) -> Path:
    """A run folder as `pyvae train` writes it, with an untrained tiny model on 8x8 digits
    (``build``: more arguments for tests/tiny.py's tiny_model, e.g. num_classes or prior)."""
    torch.manual_seed(0)
    model = tiny_model(name, latent_dim=latent_dim, **build)
    data = (
        data
        if data is not None
        else {
            "name": "digits",
            "data_dir": "data",
            "seed": 0,
            "eval_limit": N_EVAL,
            "classes": DIGITS,
            "note": "8x8 digits",
        }
    )
    metrics = {"eval_neg_elbo": 44.5, "eval_nll": 43.0, "n_eval": N_EVAL}
    training = {"epochs": 1, "lr": 0.001}
    model.save(
        folder / "model.safetensors",
        metadata={"data": data, "metrics": metrics, "training": training},
    )
    run = {"model": model.config, "data": data, "metrics": metrics, "training": training}
    (folder / "run.json").write_text(json.dumps(run))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    history = [{"epoch": 1, "train_neg_elbo": 50.0, "eval_neg_elbo": 45.0}]
    (folder / "history.json").write_text(json.dumps(history))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name in pyvae.list_models():  # every registered model, plug-in families included
        out[name] = write_run(root / name, name)
    out["conditional"] = write_run(root / "conditional", "conv", num_classes=10)
    out["vamp"] = write_run(root / "vamp", "mlp", prior="vamp")
    out["gaussian"] = write_run(root / "gaussian", "mlp", likelihood="gaussian")
    for posterior in ("iaf", "full_gaussian"):  # a flow (no closed-form scale), a full covariance
        out[posterior] = write_run(root / posterior, "mlp", posterior=posterior)
    out["wide"] = write_run(root / "wide", "mlp", latent_dim=12)
    out["one"] = write_run(root / "one", "mlp", latent_dim=1)
    return out


@pytest.fixture(scope="module")
def pg(runs: dict[str, Path]) -> Playground:
    return Playground.load(runs["conv"])


# -- the logic ---------------------------------------------------------------------------------


def test_load_reads_the_run_and_encodes_the_evaluation_images(
    pg: Playground, runs: dict[str, Path]
) -> None:
    assert pg.checkpoint == runs["conv"] / "model.safetensors"
    assert pg.problems == []
    assert pg.images is not None and pg.images.shape == (N_EVAL, 1, 8, 8)
    assert pg.labels is not None and pg.labels.shape == (N_EVAL,)
    assert pg.means is not None and pg.means.shape == (N_EVAL, 3)
    assert pg.scales is not None and bool((pg.scales > 0).all())
    with torch.no_grad():
        q = pg.model.encode(pg.images)
    torch.testing.assert_close(pg.means, q.mean)
    torch.testing.assert_close(pg.scales, q.stddev)
    assert pg.metrics["eval_nll"] == 43.0 and pg.history[0]["epoch"] == 1
    assert pg.class_names == tuple(DIGITS)
    counts = pg.n_parameters()
    assert counts["total"] == sum(p.numel() for p in pg.model.parameters())


def test_decode_is_the_likelihood_mean_of_the_decoder(pg: Playground) -> None:
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.sigmoid(pg.model.decode(z))  # Bernoulli: the mean is sigmoid(logits)
    torch.testing.assert_close(pg.decode(z), expected)
    with pytest.raises(ValueError, match=r"z: expected shape \(B, 3\)"):
        pg.decode(torch.zeros(2, 4))


def test_principal_directions_match_numpy(pg: Playground) -> None:
    assert pg.means is not None
    comps, std = pg.directions(2)
    codes = pg.means.double().numpy()
    cov = np.cov(codes, rowvar=False)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:2]
    np.testing.assert_allclose(std.numpy() ** 2, eigval[order], rtol=1e-4)
    for k, i in enumerate(order):  # the same lines (up to sign)
        assert abs(float(np.dot(comps[k].double().numpy(), eigvec[:, i]))) == pytest.approx(
            1, abs=1e-4
        )
    embedded = pg.embedding("pca")
    np.testing.assert_allclose(
        embedded, (codes - codes.mean(0)) @ comps.double().numpy().T, atol=1e-5
    )


def test_slider_range_covers_the_codes_and_the_prior(pg: Playground) -> None:
    r = pg.slider_range()
    assert r >= 3.0 and r % 0.5 == 0  # 99.9% of N(0, 1) is within ±3.3
    assert pg.means is not None and float(pg.means.abs().max()) <= r
    torch.testing.assert_close(pg.prior_mean(), torch.zeros(3))


def test_prior_samples_are_seeded(pg: Playground) -> None:
    torch.testing.assert_close(pg.prior_samples(4, seed=3), pg.prior_samples(4, seed=3))
    assert not torch.equal(pg.prior_samples(4, seed=3), pg.prior_samples(4, seed=4))


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_starts_and_ends_at_the_two_codes(pg: Playground, method: str) -> None:
    path = pg.interpolate(0, 5, 6, method=method)  # type: ignore[arg-type]
    assert path.shape == (6, 1, 8, 8)
    torch.testing.assert_close(path[0], pg.decode(pg.code_of(0)[None])[0])
    torch.testing.assert_close(path[-1], pg.decode(pg.code_of(5)[None])[0])
    with pytest.raises(ValueError, match="index: expected 0 <= index < 48"):
        pg.code_of(48)


def test_pictures() -> None:
    image = torch.tensor([[[0.0, 0.5], [1.0, 2.0]]])  # (1, 2, 2), one value above 1
    array, clipped = core.to_display(image, size=8)
    assert clipped and array.dtype == np.uint8 and array.shape == (8, 8)
    assert array[0, 0] == 0 and array[0, 7] == 128 and array[7, 7] == 255  # nearest-neighbour
    assert not core.to_display(image.clamp(0, 1), size=8)[1]
    assert core.to_display(torch.rand(3, 4, 4), size=8)[0].shape == (8, 8, 3)
    assert core.to_display(torch.rand(16), size=8)[0].shape == (8, 8)  # a square vector
    assert core.to_display(torch.rand(5), size=10)[0].shape == (24, 10)  # a strip
    strip = core.image_strip(torch.rand(3, 1, 4, 4), size=8)
    assert strip.shape == (8, 3 * 8 + 2 * 2)
    from PIL import Image

    gif = core.animation_gif(torch.rand(4, 1, 4, 4), size=8)
    with Image.open(io.BytesIO(gif)) as img:
        assert img.format == "GIF" and img.n_frames == 4 + 2  # forth, then back
    assert core.metric_rows({"a": 1.23456, "b": 3, "c": [1]}) == [("a", "1.235"), ("b", "3")]


def test_uploads_are_converted_to_the_models_input(pg: Playground) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 16), (255, 255, 255)).save(buffer, format="PNG")
    x = pg.image_from_upload(buffer.getvalue())
    assert x.shape == (1, 1, 8, 8)
    torch.testing.assert_close(x, torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="not a readable PNG or JPEG"):
        pg.image_from_upload(b"\x89PNG but not really")
    buffer = io.BytesIO()
    Image.new("1", (5000, 4000)).save(buffer, format="PNG")  # small file, 20 M pixels
    with pytest.raises(ValueError, match="image too large"):
        pg.image_from_upload(buffer.getvalue())


def test_a_damaged_checkpoint_is_a_readable_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(PlaygroundError, match="not a readable safetensors file"):
        Playground.load(tmp_path)
    with pytest.raises(PlaygroundError, match="no such|not found|without a checkpoint"):
        Playground.load(tmp_path / "missing")


def test_damaged_run_files_are_reported_and_skipped(tmp_path: Path, monkeypatch: Any) -> None:
    folder = write_run(tmp_path, "mlp")
    (folder / "run.json").write_text("{not json")
    (folder / "history.json").write_text("[" + "1," * 100 + "1]")
    monkeypatch.setattr(core, "MAX_RUN_FILE_BYTES", 100)
    pg = Playground.load(folder)
    assert any("run.json: not readable JSON" in p for p in pg.problems), pg.problems
    assert any("history.json" in p and "skipped" in p for p in pg.problems), pg.problems
    assert pg.history == [] and pg.metrics["eval_nll"] == 43.0  # from metrics.json


def test_missing_data_turns_the_data_panels_off(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "a", "mlp", data={})
    pg = Playground.load(folder)
    assert pg.images is None and pg.means is None
    assert any("does not say which data" in p for p in pg.problems)
    assert pg.reference_codes().shape == (4096, 3)  # prior draws set the slider ranges
    folder = write_run(tmp_path / "b", "mlp", data={"name": "mnist", "data_dir": "nowhere"})
    pg = Playground.load(folder)
    assert pg.images is None and any("could not be read" in p for p in pg.problems)


# -- the command -------------------------------------------------------------------------------


def test_cli_refuses_a_missing_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["playground", str(tmp_path / "nope")]) == 1
    assert "no such run folder or checkpoint" in capsys.readouterr().err
    assert main(["playground", str(tmp_path), "--port", "70000"]) == 2
    assert "expected a port number 1-65535" in capsys.readouterr().err


def test_the_server_binds_locally_and_sends_nothing_out(tmp_path: Path) -> None:
    argv = streamlit_command(tmp_path, host="127.0.0.1", port=8765)
    flags = dict(zip(argv[5:-2:2], argv[6:-2:2], strict=True))
    assert argv[-2:] == ["--", str(tmp_path.resolve())]
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8765"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.headless"] == "true"


def test_the_core_library_does_not_import_streamlit() -> None:
    import subprocess
    import sys

    check = (
        "import sys, pyvae, pyvae.app, pyvae.cli; pyvae.cli.build_parser(); "
        "print('streamlit' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# -- the page (Streamlit AppTest) --------------------------------------------------------------

streamlit_testing = pytest.importorskip("streamlit.testing.v1", reason="pip install '.[app]'")


def app(source: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PYVAE_PLAYGROUND_SOURCE", str(source))
    at = streamlit_testing.AppTest.from_file(str(PAGE), default_timeout=120)
    return at.run()


def explore_image(at: Any) -> str:
    image = at.tabs[0].get("image")[0]
    return str(image.proto.imgs[0].url)  # /media/<hash of the PNG bytes>.png


def image_captions(block: Any) -> list[str]:
    return [str(image.proto.imgs[0].caption) for image in block.get("image")]


TABS = ["Explore", "Reconstruct", "Interpolate", "Latent map", "Model card"]


MODELS = [*pyvae.list_models(), "conditional", "vamp", "gaussian", "iaf", "full_gaussian"]


@pytest.mark.parametrize("name", MODELS)
def test_every_panel_renders(
    name: str, runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(runs[name], monkeypatch)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [t.label for t in at.tabs] == TABS
    explore, recon, interp, latent_map, card = at.tabs
    d = pyvae.load(runs[name]).latent_dim  # vqvae: the flattened grid of codes, 12 here
    expected = (
        [f"z_{i + 1}" for i in range(d)]
        if d <= 10
        else [f"direction {i + 1} (sd)" for i in range(10)]
    )
    assert [s.label for s in explore.slider] == expected
    assert len(explore.get("image")) == 1
    assert len(recon.get("image")) == 2 and len(recon.dataframe) == 1  # input, recon; posterior
    assert len(interp.get("image")) == 3  # strip, animation, the two inputs
    assert len(latent_map.get("vega_lite_chart")) == 1 and len(latent_map.get("image")) == 2
    assert any("parameters" in m.value for m in card.markdown)
    assert any(c.value.startswith("metrics of the run") for c in card.caption)


def test_moving_a_slider_changes_the_decoded_image(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(runs["conv"], monkeypatch)
    before = explore_image(at)
    at.tabs[0].slider[0].set_value(2.0).run()
    after = explore_image(at)
    assert not at.exception
    assert after != before  # the media URL is a hash of the PNG's bytes
    assert any("z = (2.00, 0.00, 0.00)" in c.value for c in at.tabs[0].caption)
    at.tabs[0].button[0].click().run()  # reset to the prior mean: the first image again
    assert explore_image(at) == before
    assert at.tabs[0].slider[0].value == 0.0


def test_a_large_latent_space_gets_principal_direction_sliders(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(runs["wide"], monkeypatch)
    assert not at.exception
    sliders = at.tabs[0].slider
    assert len(sliders) == 10 and sliders[0].label == "direction 1 (sd)"
    before = explore_image(at)
    sliders[0].set_value(1.0).run()
    assert explore_image(at) != before
    at.tabs[0].button[1].click().run()  # a random draw moves the base code
    assert not at.exception and explore_image(at) != before


def test_a_conditional_model_gets_a_class_selector(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(runs["conditional"], monkeypatch)
    assert not at.exception and not at.error
    selector = at.sidebar.selectbox[0]
    assert selector.label == "Class to decode with" and selector.options == DIGITS
    before = explore_image(at)
    selector.set_value(7).run()
    assert not at.exception
    assert explore_image(at) != before  # the same code, decoded as a 7
    assert any("Conditional on **10 classes**" in m.value for m in at.tabs[4].markdown)
    assert image_captions(at.tabs[4])[0].startswith("the prior mean decoded with each class")


def test_conditional_decoding_uses_the_class(runs: dict[str, Path]) -> None:
    pg = Playground.load(runs["conditional"])
    assert pg.num_classes == 10
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.sigmoid(pg.model.decode(z, torch.tensor([3, 3])))
    torch.testing.assert_close(pg.decode(z, 3), expected)
    assert not torch.allclose(pg.decode(z, 3), pg.decode(z, 4))
    with pytest.raises(ValueError, match="conditional on 10 classes"):
        pg.decode(z)
    assert pg.images is not None and pg.labels is not None and pg.means is not None
    with torch.no_grad():  # each evaluation image was encoded with its own label
        expected_means = pg.model.encode(pg.images, pg.labels).mean
    torch.testing.assert_close(pg.means, expected_means)


def test_a_flow_posterior_is_shown_at_its_latent_point(runs: dict[str, Path]) -> None:
    from pyvae.posteriors import latent_point

    pg = Playground.load(runs["iaf"])
    assert pg.images is not None and pg.means is not None
    assert pg.scales is None  # a flow has no closed-form standard deviation: none is shown
    with torch.no_grad():
        torch.testing.assert_close(pg.means, latent_point(pg.model.encode(pg.images)))


def test_an_autoencoder_has_no_prior(runs: dict[str, Path]) -> None:
    pg = Playground.load(runs["ae"])
    assert not pg.has_prior()
    assert pg.means is not None and pg.scales is not None
    # without a prior, "the prior mean" is the mean of the evaluation codes, and draws come
    # from a Gaussian fitted to them
    torch.testing.assert_close(pg.prior_mean(), pg.means.mean(0))
    draws = pg.prior_samples(20000, seed=1)
    torch.testing.assert_close(draws.mean(0), pg.means.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(draws.std(0), pg.means.std(0), atol=0.05, rtol=0.05)
    torch.testing.assert_close(pg.scales, torch.zeros_like(pg.means))  # a point mass


def test_a_one_dimensional_latent_space_renders(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(runs["one"], monkeypatch)
    assert not at.exception and not at.error
    assert [s.label for s in at.tabs[0].slider] == ["z_1"]
    at.tabs[0].radio[0].set_value("principal directions").run()
    assert not at.exception
    assert [s.label for s in at.tabs[0].slider] == ["direction 1 (sd)"]


def test_panels_respond(runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    at = app(runs["mlp"], monkeypatch)
    recon = at.tabs[1]
    recon.radio[1].set_value("by class").run()
    recon = at.tabs[1]
    recon.selectbox[0].set_value(3).run()
    assert not at.exception
    assert "(class 3)" in image_captions(at.tabs[1])[0]
    at.tabs[1].button[0].click().run()  # "Explore this code": the sliders take the code
    assert not at.exception
    interp = at.tabs[2]
    interp.radio[-1].set_value("spherical").run()
    assert not at.exception
    assert "spherical" in image_captions(at.tabs[2])[0]
    at.tabs[3].radio[0].set_value("t-SNE").run()
    assert not at.exception and not at.error
    at.tabs[3].number_input[0].set_value(7).run()
    assert image_captions(at.tabs[3])[0].startswith("decoded code of #7")


def test_a_damaged_checkpoint_gives_a_message_in_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    at = app(tmp_path, monkeypatch)
    assert not at.exception
    assert len(at.error) == 1 and "not a readable safetensors file" in at.error[0].value


def test_without_evaluation_images_the_page_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_run(tmp_path, "conv", data={"name": "mnist", "data_dir": "nowhere"})
    at = app(folder / "model.safetensors", monkeypatch)  # a checkpoint file, not a folder
    assert not at.exception and not at.error
    assert any("could not be read" in w.value for w in at.warning)
    assert len(at.tabs[0].get("image")) == 1  # Explore decodes from the prior
    assert at.tabs[1].radio[0].options == ["upload an image"]
    assert any("needs the evaluation images" in i.value for i in at.tabs[2].info)
    assert any("needs the evaluation images" in i.value for i in at.tabs[3].info)
