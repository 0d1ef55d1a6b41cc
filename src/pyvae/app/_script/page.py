"""The Streamlit page of ``pyvae playground`` (run by Streamlit, not imported by pyvae).

The model and the encoded evaluation set are loaded once per checkpoint file (``cache_resource``,
keyed by its path, size and modification time); each panel is a fragment, so moving a slider
reruns only its panel and decodes only the one code that changed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from pyvae.app.core import (
    Playground,
    PlaygroundError,
    animation_gif,
    image_strip,
    metric_rows,
    to_display,
)

AXES, PCA = "latent axes", "principal directions"
MAX_AXIS_SLIDERS = 10  # above this many latent dimensions the sliders follow principal directions
IMAGE_SIZE = 192


def _source() -> str | None:
    """The run to show: set by ``pyvae playground`` in the environment (and in argv)."""
    source = os.environ.get("PYVAE_PLAYGROUND_SOURCE")
    if source:
        return source
    return sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None


def _stamp(source: str) -> tuple[str, int, int]:
    """What identifies the checkpoint file's content for the cache (path, size, mtime)."""
    path = Path(source)
    file = path / "model.safetensors" if path.is_dir() else path
    try:
        stat = file.stat()
    except OSError:
        return (str(file), -1, -1)
    return (str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@st.cache_resource(show_spinner="Loading the model and encoding the evaluation images...")
def _load(source: str, stamp: tuple[str, int, int]) -> Playground:
    del stamp  # part of the cache key only
    torch.set_num_threads(1)  # tiny decodes: one thread is fastest, and fair to other sessions
    return Playground.load(source)


def _show(image: torch.Tensor, caption: str, *, size: int = IMAGE_SIZE) -> None:
    array, clipped = to_display(image, size=size)
    if clipped:
        caption += " (values outside [0, 1] clipped for display)"
    st.image(array, caption=caption, output_format="PNG")


def _panel_error(what: str, exc: Exception) -> None:
    st.error(f"{what} failed: {type(exc).__name__}: {exc}")


# -- explore -----------------------------------------------------------------------------------


def _mode(pg: Playground) -> str:
    if pg.latent_dim > MAX_AXIS_SLIDERS:
        return PCA
    return str(st.session_state.get("explore_mode", AXES))


def _slider_key(mode: str, i: int) -> str:
    return f"z_{'axis' if mode == AXES else 'pc'}_{i}"


def _set_code(pg: Playground, z: torch.Tensor) -> None:
    """Put code z on the sliders (a callback: runs before the widgets are drawn)."""
    mode = _mode(pg)
    if mode == AXES:
        r = pg.slider_range()
        outside = [i for i in range(pg.latent_dim) if abs(float(z[i])) > r]
        for i in range(pg.latent_dim):
            st.session_state[_slider_key(mode, i)] = float(min(max(float(z[i]), -r), r))
        st.session_state["explore_note"] = (
            f"z_{', z_'.join(str(i + 1) for i in outside)} lay outside the sliders' range ±{r:g} "
            f"and were set to its end"
            if outside
            else ""
        )
    else:
        st.session_state["explore_base"] = z.tolist()
        for i in range(min(pg.latent_dim, MAX_AXIS_SLIDERS)):
            st.session_state[_slider_key(mode, i)] = 0.0
        st.session_state["explore_note"] = ""


def _random_code(pg: Playground) -> None:
    seed = int(st.session_state.get("explore_seed", 0))
    _set_code(pg, pg.prior_samples(1, seed)[0])


@st.fragment
def explore_panel(pg: Playground, y: int | None) -> None:
    """One slider per latent axis (or principal direction); the decoded code beside them."""
    d = pg.latent_dim
    if d > MAX_AXIS_SLIDERS:
        st.caption(
            f"{d} latent dimensions: the sliders move along the {MAX_AXIS_SLIDERS} principal "
            f"directions of the evaluation codes, in standard deviations of the codes along each."
        )
    else:
        st.radio("The sliders move along", [AXES, PCA], horizontal=True, key="explore_mode")
    mode = _mode(pg)
    k = d if mode == AXES else min(d, MAX_AXIS_SLIDERS)
    origin = f"the {origin_name(pg)}"
    buttons = st.columns([1, 1, 1])
    buttons[0].button(
        f"Reset to {origin}",
        on_click=_set_code,
        args=(pg, pg.prior_mean()),
        key="explore_reset",
    )
    buttons[1].number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="explore_seed")
    buttons[2].button(
        "Random draw" + ("" if pg.has_prior() else " (fitted Gaussian)"),
        on_click=_random_code,
        args=(pg,),
        key="explore_random",
    )
    if "explore_base" not in st.session_state:
        st.session_state["explore_base"] = pg.prior_mean().tolist()
    left, right = st.columns([3, 2])
    values: list[float] = []
    with left:
        if mode == AXES:
            r = pg.slider_range()
            mean = pg.prior_mean()
            for i in range(k):
                key = _slider_key(mode, i)
                if key not in st.session_state:
                    st.session_state[key] = float(min(max(float(mean[i]), -r), r))
                values.append(st.slider(f"z_{i + 1}", -r, r, step=0.05, key=key))
        else:
            for i in range(k):
                key = _slider_key(mode, i)
                st.session_state.setdefault(key, 0.0)
                values.append(st.slider(f"direction {i + 1} (sd)", -3.0, 3.0, step=0.05, key=key))
    with right:
        try:
            started = time.perf_counter()
            if mode == AXES:
                z = torch.tensor(values, dtype=torch.float32)
            else:
                comps, std = pg.directions(k)
                base = torch.tensor(st.session_state["explore_base"], dtype=torch.float32)
                z = base + (torch.tensor(values) * std) @ comps
            image = pg.decode(z[None], y)[0]
            array, clipped = to_display(image, size=IMAGE_SIZE)
            elapsed = (time.perf_counter() - started) * 1000
            with st.container(key="explore_image"):
                st.image(array, caption="decoded mean of p(x|z)", output_format="PNG")
            st.caption(
                f"z = ({', '.join(f'{v:.2f}' for v in z[:6].tolist())}"
                f"{', ...' if d > 6 else ''}); decoded in {elapsed:.1f} ms"
                + ("; values outside [0, 1] clipped for display" if clipped else "")
            )
        except Exception as exc:
            _panel_error("Decoding", exc)
        note = st.session_state.get("explore_note")
        if note:
            st.warning(note)


# -- reconstruct -------------------------------------------------------------------------------


def _pick_image(pg: Playground, prefix: str, label: str) -> int | None:
    """An evaluation image chosen by index or by class; its index."""
    assert pg.images is not None
    n = len(pg.images)
    how = st.radio(
        f"{label}: choose", ["by index", "by class"], horizontal=True, key=f"{prefix}_how"
    )
    if how == "by index":
        return int(st.number_input(f"{label}: index", 0, n - 1, step=1, key=f"{prefix}_index"))
    classes = sorted({int(c) for c in pg.labels.tolist()}) if pg.labels is not None else []
    if not classes:
        st.info("The evaluation images have no labels.")
        return None
    cls = st.selectbox(f"{label}: class", classes, format_func=pg.class_name, key=f"{prefix}_class")
    members = pg.indices_of_class(int(cls))
    nth = int(
        st.number_input(
            f"{label}: which one of the {len(members)}",
            0,
            len(members) - 1,
            step=1,
            key=f"{prefix}_nth",
        )
    )
    return members[nth]


def _to_explorer(pg: Playground, z: list[float]) -> None:
    _set_code(pg, torch.tensor(z))


@st.fragment
def reconstruct_panel(pg: Playground, y: int | None) -> None:
    """An input (evaluation image or upload), its reconstruction and its posterior."""
    sources = ["evaluation image"] if pg.images is not None else []
    if len(pg.input_shape) == 3 and pg.input_shape[0] in (1, 3):
        sources.append("upload an image")
    if not sources:
        st.info("No evaluation images are loaded and this model does not take images.")
        return
    where = st.radio("Input", sources, horizontal=True, key="recon_source")
    x: torch.Tensor | None = None
    label: int | None = y
    caption = ""
    if where == "evaluation image":
        assert pg.images is not None
        index = _pick_image(pg, "recon", "Image")
        if index is not None:
            x = pg.images[index : index + 1]
            if pg.labels is not None:
                label = int(pg.labels[index]) if pg.num_classes is not None else y
                caption = f"input #{index} (class {pg.class_name(int(pg.labels[index]))})"
            else:
                caption = f"input #{index}"
    else:
        upload = st.file_uploader("A PNG or JPEG", type=["png", "jpg", "jpeg"], key="upload")
        if upload is not None:
            try:
                x = pg.image_from_upload(upload.getvalue())
                caption = f"{upload.name}, resized to {pg.input_shape[1]}x{pg.input_shape[2]}"
            except ValueError as exc:
                st.error(f"{upload.name}: {exc}")
    if x is None:
        return
    try:
        point, scale = pg.encode(x, label)
        recon = pg.decode(point, label)[0]
    except Exception as exc:
        _panel_error("Reconstruction", exc)
        return
    cols = st.columns(3)
    with cols[0]:
        _show(x[0], caption)
    with cols[1]:
        _show(recon, "reconstruction (decoded posterior point)")
    with cols[2]:
        rows: dict[str, Any] = {
            "dimension": [f"z_{i + 1}" for i in range(pg.latent_dim)],
            "mean": [round(v, 4) for v in point[0].tolist()],
        }
        if scale is not None:
            rows["scale"] = [round(v, 4) for v in scale[0].tolist()]
        st.caption("posterior q(z|x): mean and standard deviation per dimension")
        st.dataframe(rows, hide_index=True, height=min(38 + 35 * pg.latent_dim, 320))
        st.button(
            "Explore this code",
            on_click=_to_explorer,
            args=(pg, point[0].tolist()),
            key="recon_to_explore",
            help="put this code on the sliders of the Explore tab",
        )


# -- interpolate -------------------------------------------------------------------------------


@st.fragment
def interpolate_panel(pg: Playground, y: int | None) -> None:
    """A decoded path between the codes of two evaluation images: a strip and an animation."""
    if pg.images is None:
        st.info("Interpolation needs the evaluation images, which are not loaded.")
        return
    n = len(pg.images)
    if "interp_b_index" not in st.session_state and n > 1:
        other = [i for i in range(n) if pg.labels is None or pg.labels[i] != pg.labels[0]]
        st.session_state["interp_b_index"] = other[0] if other else 1
    cols = st.columns(2)
    with cols[0]:
        a = _pick_image(pg, "interp_a", "From")
    with cols[1]:
        b = _pick_image(pg, "interp_b", "To")
    if a is None or b is None:
        return
    method = st.radio(
        "Path",
        ["linear", "spherical"],
        horizontal=True,
        key="interp_method",
        help="spherical (slerp) keeps the norm between the endpoints' norms, which stays where a "
        "Gaussian prior puts its mass",
    )
    steps = st.slider("Steps", 3, 20, 10, key="interp_steps")
    try:
        path = pg.interpolate(
            a, b, steps, method="slerp" if method == "spherical" else "linear", y=y
        )
    except Exception as exc:
        _panel_error("Interpolation", exc)
        return
    st.image(
        image_strip(path, size=72),
        caption=f"#{a} to #{b}, {method}, {steps} steps",
        output_format="PNG",
    )
    left, right = st.columns(2)
    with left:
        st.image(animation_gif(path, size=IMAGE_SIZE), caption="as an animation")
    with right:
        st.image(
            image_strip([pg.images[a], pg.images[b]], size=IMAGE_SIZE // 2),
            caption="the two inputs",
            output_format="PNG",
        )


# -- latent map --------------------------------------------------------------------------------


@st.fragment
def map_panel(pg: Playground, y: int | None) -> None:
    """The posterior points of the evaluation images in 2-D; a chosen point is decoded."""
    if pg.means is None:
        st.info("The latent map needs the evaluation images, which are not loaded.")
        return
    import altair as alt

    d = pg.latent_dim
    method = "pca"
    if d > 2:
        choice = st.radio("Projection", ["PCA", "t-SNE"], horizontal=True, key="map_method")
        method = "tsne" if choice == "t-SNE" else "pca"
    with st.spinner("Embedding the codes..."):
        xy = pg.embedding(method)  # type: ignore[arg-type]
    axes = {
        "pca": ("principal direction 1", "principal direction 2"),
        "tsne": ("t-SNE 1", "t-SNE 2"),
    }[method]
    if d <= 2:
        axes = ("z_1", "z_2" if d == 2 else "(none)")
    labels = pg.labels.tolist() if pg.labels is not None else [0] * len(xy)
    data = {
        "x": xy[:, 0].tolist(),
        "y": xy[:, 1].tolist(),
        "class": [pg.class_name(int(c)) for c in labels],
        "index": list(range(len(xy))),
    }
    records = [
        {"x": a, "y": b, "class": c, "index": i}
        for a, b, c, i in zip(data["x"], data["y"], data["class"], data["index"], strict=True)
    ]
    pick = alt.selection_point(fields=["index"], name="pick")
    chart = (
        alt.Chart(alt.Data(values=records))
        .mark_circle(size=40)
        .encode(
            x=alt.X("x:Q", title=axes[0]),
            y=alt.Y("y:Q", title=axes[1]),
            color=alt.Color("class:N", title="class"),
            tooltip=["index:Q", "class:N"],
            opacity=alt.condition(pick, alt.value(0.9), alt.value(0.35)),
        )
        .add_params(pick)
        .properties(height=420)
    )
    left, right = st.columns([3, 1])
    with left:
        event = st.altair_chart(chart, on_select="rerun", key="latent_map")
    chosen: int | None = None
    try:
        points = event.selection.get("pick", []) if event is not None else []
        if points:
            chosen = int(points[0]["index"])
    except (AttributeError, KeyError, TypeError, ValueError):
        chosen = None
    with right:
        if chosen is not None:
            st.session_state["map_index"] = chosen
        index = int(
            st.number_input(
                "Decode point #",
                0,
                len(xy) - 1,
                step=1,
                key="map_index",
                help="click a point in the map, or type its index",
            )
        )
        own = pg.num_classes is not None and pg.labels is not None
        try:  # a conditional model decodes a point with the class of its image
            image = pg.decode(pg.code_of(index)[None], int(labels[index]) if own else y)[0]
        except Exception as exc:
            _panel_error("Decoding", exc)
            return
        cls = f" (class {pg.class_name(int(labels[index]))})" if pg.labels is not None else ""
        _show(image, f"decoded code of #{index}{cls}", size=160)
        assert pg.images is not None
        _show(pg.images[index], f"input #{index}", size=160)


# -- model card --------------------------------------------------------------------------------


def origin_name(pg: Playground) -> str:
    """What Reset puts on the sliders, in words."""
    return "prior mean" if pg.has_prior() else "mean of the evaluation codes"


def card_panel(pg: Playground) -> None:
    """Config, metrics and parameters of the model; where it came from."""
    counts = pg.n_parameters()
    left, right = st.columns(2)
    with left:
        st.markdown(
            f"**{type(pg.model).__name__}** (`{pg.config.get('name', '?')}`), latent size "
            f"{pg.latent_dim}, input shape {pg.input_shape}, **{counts['total']:,} parameters**; "
            f"written by pyvae {pg.pyvae_version}; checkpoint `{pg.checkpoint}`"
        )
        if pg.num_classes is not None:
            names = ", ".join(pg.class_name(i) for i in range(pg.num_classes))
            st.markdown(
                f"Conditional on **{pg.num_classes} classes** ({names}): the class selector in "
                f"the sidebar sets the class that Explore, Interpolate and uploads decode with."
            )
            try:
                k = pg.num_classes
                codes = pg.prior_mean()[None].repeat(k, 1)
                strip = image_strip(pg.decode(codes, torch.arange(k)), size=64)
                st.image(
                    strip,
                    caption=f"the {origin_name(pg)} decoded with each class, "
                    f"{pg.class_name(0)} to {pg.class_name(k - 1)}",
                    output_format="PNG",
                )
            except Exception as exc:
                _panel_error("Decoding the classes", exc)
        st.caption("parameters per part")
        st.dataframe({"part": list(counts), "parameters": list(counts.values())}, hide_index=True)
        st.caption("build config (`pyvae.build(config)` rebuilds the model)")
        st.json(pg.config, expanded=True)
    with right:
        rows = metric_rows(pg.metrics)
        if rows:
            st.caption("metrics of the run (losses in nats per example)")
            st.dataframe(
                {"metric": [k for k, _ in rows], "value": [v for _, v in rows]},
                hide_index=True,
            )
        else:
            st.info("No metrics recorded for this checkpoint.")
        training = pg.metadata.get("training") or pg.run.get("training")
        if isinstance(training, dict) and training:
            rows = metric_rows(training)
            st.caption("training settings")
            st.dataframe(
                {"setting": [k for k, _ in rows], "value": [v for _, v in rows]},
                hide_index=True,
            )
        curves = {
            key: [row.get(key) for row in pg.history]
            for key in ("train_neg_elbo", "eval_neg_elbo")
            if pg.history and all(isinstance(row.get(key), (int, float)) for row in pg.history)
        }
        if curves:
            st.caption("negative ELBO per epoch (nats)")
            st.line_chart(curves)
        note = (pg.metadata.get("data") or {}).get("note") if pg.metadata else None
        if note:
            st.caption(f"data: {note}")


# -- the page ----------------------------------------------------------------------------------


def main() -> None:
    """Draw the page."""
    st.set_page_config(page_title="pyvae playground", layout="wide")
    source = _source()
    st.title("pyvae playground")
    if not source:
        st.error("No run given: start the app with `pyvae playground RUN_OR_CHECKPOINT`.")
        st.stop()
    assert source is not None
    try:
        pg = _load(source, _stamp(source))
    except PlaygroundError as exc:
        st.error(f"Cannot open {source}: {exc}")
        st.stop()
        return
    n = 0 if pg.images is None else len(pg.images)
    st.caption(
        f"{type(pg.model).__name__} `{pg.config.get('name', '?')}` with {pg.latent_dim} latent "
        f"dimensions, from `{pg.source}`; {n} evaluation images encoded"
    )
    for problem in pg.problems:
        st.warning(problem)
    y: int | None = None
    if pg.num_classes is not None:
        y = int(
            st.sidebar.selectbox(
                "Class to decode with",
                list(range(pg.num_classes)),
                format_func=pg.class_name,
                key="class",
            )
        )
    st.sidebar.markdown(
        "Move a slider in **Explore** to walk the latent space; **Reconstruct** shows what the "
        "model keeps of an input; **Interpolate** walks between two inputs; **Latent map** "
        "shows where the inputs land; **Model card** says what the model is."
    )
    tabs = st.tabs(["Explore", "Reconstruct", "Interpolate", "Latent map", "Model card"])
    with tabs[0]:
        explore_panel(pg, y)
    with tabs[1]:
        reconstruct_panel(pg, y)
    with tabs[2]:
        interpolate_panel(pg, y)
    with tabs[3]:
        try:
            map_panel(pg, y)
        except ImportError as exc:
            st.error(f"The latent map needs altair and scikit-learn: {exc}")
    with tabs[4]:
        card_panel(pg)


# Streamlit runs this file as __main__; guarded, so that importing it (a multiprocessing child
# that re-imports the parent's __main__ after an AppTest, say) draws nothing.
if __name__ == "__main__":
    main()
