"""The documentation cannot drift from the code.

* Every ```python block of ``docs/**/*.md`` and ``README.md`` runs, page by page, in order, in one
  namespace per page, inside a temporary working directory. Directives in HTML comments (invisible
  on the site) placed on the lines right before a block adjust it:

  - ``<!-- skip: REASON -->``: the block is not run (a reason is required, e.g. it downloads);
  - ``<!-- test-replace: OLD => NEW -->``: run the block with OLD replaced by NEW (OLD must occur),
    e.g. fewer epochs, so the suite stays fast;
  - ``<!-- package-file: PATH -->`` (on any fenced block): the block is the file PATH of the
    page's example plug-in package (see ``test_plugin_package_loads_through_entry_points``).

  Names a page registers (plug-ins) are removed from pyvae's registries after the page.

  The working directory holds ``data/MNIST/raw/``: a small MNIST in torchvision's layout, cut from
  the real MNIST test set in ``../shared/data/mnist/``, so that ``torchvision.datasets.MNIST("data",
  download=True)`` finds its files and downloads nothing.
* ``mkdocs build --strict`` passes (no warning, no broken link, no orphan page) when the docs
  extra is installed (the test extra includes it); skipped without it, except in CI (``CI``
  set), where a missing docs extra fails.
* The plug-in package of ``docs/plugins.md``, installed as a distribution, registers its names
  through entry points.
* Every public name of pyvae has a docstring, and appears in the API reference; the arguments
  a docstring documents exist in the signature.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import pyvae

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]

# Code run before a page's own blocks, for pages that show fragments using names they do not
# define: README's examples train on a `loader` of MNIST-shaped batches and plot latent `means`
# with their `labels`.
PREAMBLES: dict[str, str] = {
    "README.md": textwrap.dedent(
        """
        import matplotlib
        matplotlib.use("Agg")
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        data = TensorDataset(torch.rand(64, 1, 28, 28), torch.zeros(64))
        loader = DataLoader(data, batch_size=32)
        means, labels = torch.randn(64, 4), torch.randint(0, 10, (64,))
        """
    ),
}

N_TRAIN, N_TEST = 256, 128  # the small MNIST written for the docs' torchvision loaders

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)[^\n]*$")
DIRECTIVE = re.compile(
    r"^\s*<!--\s*(?P<key>skip|test-replace|package-file)\s*:\s*(?P<value>.*?)\s*-->\s*$"
)


@dataclass
class Block:
    page: str
    line: int
    code: str
    lang: str = "python"
    skip: str | None = None
    replacements: list[tuple[str, str]] = field(default_factory=list)
    package_file: str | None = None


def extract_blocks(path: Path, lang: str | None = "python") -> list[Block]:
    """The fenced blocks of a Markdown file in ``lang`` (all when None), with the directives that
    precede them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, block_lang = match["indent"], match["lang"]
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[i]):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        if lang is not None and block_lang != lang:
            continue
        block = Block(page=path.name, line=start + 1, code="\n".join(body) + "\n", lang=block_lang)
        j = start - 1
        while j >= 0 and (d := DIRECTIVE.match(lines[j])):
            if d["key"] == "skip":
                assert d["value"], f"{path.name}:{j + 1}: a skip directive needs a reason"
                block.skip = d["value"]
            elif d["key"] == "package-file":
                block.package_file = d["value"]
            else:
                old, sep, new = d["value"].partition(" => ")
                assert sep, f"{path.name}:{j + 1}: expected test-replace: OLD => NEW"
                block.replacements.append((old, new))
            j -= 1
        blocks.append(block)
    return blocks


def _write_idx(path: Path, array: torch.Tensor) -> None:
    """An uncompressed IDX file of unsigned bytes (the MNIST format)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.dim())
    header += struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(header + array.to(torch.uint8).contiguous().numpy().tobytes())


@pytest.fixture(scope="session")
def small_mnist_raw(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """``MNIST/raw`` in torchvision's layout, with N_TRAIN + N_TEST real MNIST test images (None
    when the MNIST test set is not in MNIST_DIR)."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        return None
    from pyvae.data import read_idx

    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    raw = tmp_path_factory.mktemp("mnist") / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n = N_TRAIN + N_TEST
    _write_idx(raw / "train-images-idx3-ubyte", images[:N_TRAIN])
    _write_idx(raw / "train-labels-idx1-ubyte", labels[:N_TRAIN])
    _write_idx(raw / "t10k-images-idx3-ubyte", images[N_TRAIN:n])
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels[N_TRAIN:n])
    for name in [p.name for p in raw.iterdir()]:  # the .gz files torchvision keeps beside them
        with open(raw / name, "rb") as src, gzip.open(raw / f"{name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    return raw


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PAGES_WITH_CODE = [p for p in PAGES if extract_blocks(p)]
REGISTRIES = [
    pyvae.MODELS,
    pyvae.LIKELIHOODS,
    pyvae.PRIORS,
    pyvae.CORRUPTIONS,
    pyvae.OBJECTIVES,
    pyvae.POSTERIORS,
]


@pytest.fixture
def isolated_registries() -> Iterator[None]:
    """Names registered while a page runs are forgotten afterwards."""
    with contextlib.ExitStack() as stack:
        for registry in REGISTRIES:
            stack.enter_context(registry.scoped())
        yield


@pytest.mark.parametrize(
    "page", PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE]
)
def test_page_code_runs(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    small_mnist_raw: Path | None,
    isolated_registries: None,
    one_thread: None,  # conftest: tiny tensors, so one thread (much faster on a busy machine)
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYVAE_DOCS_FREE_PORT", str(_free_port()))  # for a DDP example
    if small_mnist_raw is not None:
        shutil.copytree(small_mnist_raw.parent, tmp_path / "data" / "MNIST")
    elif re.search(r"MNIST\(|load_mnist\(", page.read_text(encoding="utf-8")):
        pytest.skip(f"{page.name} reads MNIST, and the MNIST test set is not in {MNIST_DIR}")
    namespace: dict[str, object] = {"__name__": "__main__"}
    preamble = PREAMBLES.get(page.name)
    if preamble:
        exec(compile(preamble, f"<preamble of {page.name}>", "exec"), namespace)
    ran = 0
    try:
        for block in extract_blocks(page):
            if block.skip:
                continue
            code = block.code
            for old, new in block.replacements:
                assert old in code, (
                    f"{page.name}:{block.line}: test-replace {old!r} not in the block"
                )
                code = code.replace(old, new)
            try:
                exec(compile(code, f"{page.name}:{block.line}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(
                    f"the code block at {page.relative_to(ROOT)}:{block.line} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            ran += 1
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    assert ran, f"{page.name}: every block is skipped"


def test_directives_are_well_formed() -> None:
    """A directive must sit right above a fenced block (``skip`` and ``test-replace`` above a
    python one), or it would silently do nothing."""
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            directive = DIRECTIVE.match(line)
            if not directive:
                continue
            k = i + 1
            while k < len(lines) and DIRECTIVE.match(lines[k]):
                k += 1
            fence = FENCE.match(lines[k]) if k < len(lines) else None
            assert fence, f"{page.name}:{i + 1}: a directive must sit right above a fenced block"
            if directive["key"] != "package-file":
                assert fence["lang"] == "python", (
                    f"{page.name}:{i + 1}: {directive['key']} applies to ```python blocks only"
                )


def test_plugin_package_loads_through_entry_points(tmp_path: Path) -> None:
    """The package of docs/plugins.md, installed (as a .dist-info on the path), registers its
    names through its entry points in a fresh interpreter, and they work together."""
    page = DOCS / "plugins.md"
    blocks = extract_blocks(page, lang=None)
    files = {b.package_file: b.code for b in blocks if b.package_file}
    assert {"pyproject.toml", "src/pyvae_tiny/__init__.py"} <= set(files)
    # components.py is "the three classes above, as they are": the page's python blocks that
    # register them (the page's other sections, e.g. an objective, are not in the package).
    registering = [
        b.code
        for b in blocks
        if b.lang == "python" and re.search(r"@pyvae\.register_(likelihood|prior|model)\(", b.code)
    ]
    assert len(registering) == 3, "expected the likelihood, prior and model blocks"
    files["src/pyvae_tiny/components.py"] = "\n\n".join(registering)

    import tomllib

    project = tomllib.loads(files["pyproject.toml"])["project"]
    site = tmp_path / "site"
    package = site / "pyvae_tiny"
    package.mkdir(parents=True)
    for name, text in files.items():
        if name.startswith("src/pyvae_tiny/"):
            (package / Path(name).name).write_text(text, encoding="utf-8")
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in eps.items()) + "\n"
        for group, eps in project["entry-points"].items()
    )
    (info / "entry_points.txt").write_text(entry_points)

    check = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("error")          # a plug-in that fails to load warns: fail instead
        import torch, pyvae
        assert "tiny_mlp" in pyvae.list_models(), pyvae.list_models()
        assert "student_t" in pyvae.list_likelihoods(), pyvae.list_likelihoods()
        assert "laplace" in pyvae.list_priors(), pyvae.list_priors()
        model = pyvae.build("tiny_mlp", input_shape=(6,), latent_dim=2, likelihood="student_t",
                            prior="laplace")
        x = torch.randn(4, 6)
        model.loss(x, model(x)).loss.backward()
        assert pyvae.build(model.config).config == model.config
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    modules = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
    missing = [m for m in modules if not _importable(m)]
    if missing:
        message = (
            f'the docs extra is not installed ({", ".join(missing)}): pip install -e ".[docs]"'
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must build the docs strictly, but {message}")
        pytest.skip(message)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _public_names() -> list[tuple[str, object]]:
    """(qualified name, object) for every name in the ``__all__`` of pyvae and its modules, and
    the public methods and properties that their classes define."""
    modules = [pyvae] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(pyvae.__path__, "pyvae.")
        if not info.name.split(".")[-1].startswith("_")
    ]
    seen: set[int] = set()
    names: list[tuple[str, object]] = []
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if name.startswith("__") or id(obj) in seen:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants and type aliases; a registry is documented by its class
            seen.add(id(obj))
            names.append((f"{module.__name__}.{name}", obj))
            if inspect.isclass(obj) and obj.__module__.startswith("pyvae"):
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if inspect.isfunction(value) or isinstance(
                        value, (property, classmethod, staticmethod)
                    ):
                        names.append(
                            (f"{obj.__module__}.{obj.__qualname__}.{attr}", getattr(obj, attr))
                        )
    return names


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for qualname, obj in _public_names():
        doc = inspect.getdoc(obj)  # inherited from a base class's method when not overridden
        if not doc or not doc.strip():
            missing.append(qualname)
    assert not missing, "public names without a docstring:\n" + "\n".join(sorted(set(missing)))


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def test_api_reference_covers_every_public_name() -> None:
    """Each name in the ``__all__`` of pyvae and its modules is rendered by a ``::: name``
    directive of docs/api/ (directly, under another import path, or as a member of a rendered
    module), or, for registries, register functions and constants, named in its text."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "api").glob("*.md")))
    directives = re.findall(r"^::: ([\w.]+)", text, flags=re.MULTILINE)
    rendered = {id(_resolve(d)) for d in directives}
    rendered_modules = {d for d in directives if inspect.ismodule(_resolve(d))}
    modules = [pyvae] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(pyvae.__path__, "pyvae.")
        if not info.name.split(".")[-1].startswith("_")
    ]
    missing = []
    for module in modules:
        if module.__name__ in rendered_modules:
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if name.startswith("__") or id(obj) in rendered:
                continue
            if getattr(obj, "__module__", None) in rendered_modules:
                continue
            if f"`pyvae.{name}" in text or re.search(rf"`pyvae\.[\w.]*\b{name}\b", text):
                continue  # a registry, a register function or a constant, named in the text
            missing.append(f"{module.__name__}.{name}")
    assert not missing, "public names missing from docs/api/:\n" + "\n".join(missing)


ARGS_SECTION = re.compile(r"^(Args|Arguments|Parameters):\s*$")
ARG_ENTRY = re.compile(r"^(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?:\([^)]*\))?\s*:")


def _documented_args(doc: str) -> list[str]:
    """The argument names of a Google-style ``Args:`` section (``x0, x1:`` gives both)."""
    names: list[str] = []
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if not ARGS_SECTION.match(line.strip()) or line.startswith(" "):
            continue
        indent = None
        for entry in lines[i + 1 :]:
            if not entry.strip():
                continue
            width = len(entry) - len(entry.lstrip())
            if width == 0:
                break  # the next section
            indent = width if indent is None else indent
            match = ARG_ENTRY.match(entry.strip()) if width == indent else None
            if match:
                names += [n.strip().lstrip("*") for n in match["names"].split(",")]
    return names


def test_documented_arguments_exist() -> None:
    """Every argument a public docstring documents is a parameter of its signature (the check
    griffe's ``warn_unknown_params`` makes, which mkdocs.yml switches off for "x0, x1" entries)."""
    wrong = []
    for qualname, obj in _public_names():
        target = obj.__init__ if inspect.isclass(obj) else obj
        if isinstance(target, property) or not callable(target):
            continue
        doc = inspect.getdoc(obj) or ""
        try:
            params = set(inspect.signature(target).parameters)
        except (TypeError, ValueError):
            continue
        wrong += [f"{qualname}: {n}" for n in _documented_args(doc) if n not in params]
    assert not wrong, "documented arguments that the signature lacks:\n" + "\n".join(wrong)
