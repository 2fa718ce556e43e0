"""The package's shape: imports run one way, no private names cross modules, files and functions
stay small, one registry, and the estimators' shared training settings do not drift apart."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "latentlab"

#: Longer than the limits on purpose (the limits are ~600 lines a file, ~80 a function).
LONG_FUNCTIONS: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their __init__)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str, is_package: bool):
    """(target module, imported names) for every import statement that runs, at any depth (module
    level or inside functions); imports under ``if TYPE_CHECKING:`` never run and are left out."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for n in ast.walk(node))
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]


def _graph():
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for m, path in mods.items():
        is_package = path.name == "__init__.py"
        for target, names in _imports(path, m, is_package):
            if not target.startswith("latentlab"):
                continue
            named = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
            targets = named or [target]
            if len(named) < len(names) and target in mods:
                targets.append(target)  # names taken from the module itself
            for t in targets:
                # Importing a.b.c runs the __init__ of a and a.b first: those are edges too, except
                # to the importer's own packages, whose __init__ always starts before it runs.
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    p = ".".join(parts[:i])
                    if p in mods and p != m and not (m + ".").startswith(p + "."):
                        edges[m].add(p)
            for n in names:
                if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
                    private.append(f"{m} imports {n} from {target}")
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_loops():
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_the_loop_finder_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    _, private = _graph()
    assert private == []


def test_files_and_functions_stay_small():
    long_files = [f"{p.relative_to(PACKAGE)} ({n} lines)" for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > 600]
    assert long_files == []
    long_functions = []
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                    body = body[1:]  # the docstring does not count
                n = (body[-1].end_lineno - body[0].lineno + 1) if body else 0
                key = f"{p.relative_to(PACKAGE)}:{node.name}"
                if n > 80 and key not in LONG_FUNCTIONS:
                    long_functions.append(f"{key} ({n} lines)")
    assert long_functions == []


# ---------------------------------------------------------------------------------------- registry
def test_one_registry_feeds_load_the_command_line_and_the_public_names():
    import latentlab
    from latentlab import cli
    from latentlab.models import MODELS

    assert list(MODELS) == ["pca", "ae", "vae", "iwae", "vamp", "hvae", "cvae"]
    for name, cls in MODELS.items():
        assert getattr(latentlab, cls.__name__) is cls
        assert cls.model_name == name
        assert cls.__name__ in latentlab.__all__
    fit = next(a for a in cli.build_parser()._actions if hasattr(a, "choices") and a.choices and "fit" in a.choices)
    models = next(a for a in fit.choices["fit"]._actions if hasattr(a, "choices") and a.choices and "vae" in a.choices)
    assert list(models.choices) == list(MODELS)


def test_a_new_model_is_registered_in_one_place(tmp_path, digits):
    """A VAE variant defined anywhere, with one decorator, is fitted, saved, loaded and measured."""
    import latentlab
    from latentlab.evaluation import evaluate
    from latentlab.models import MODELS, VAE, register
    from latentlab.objectives import ImportanceWeightedBound

    @register("test-iw-vae")
    class TinyVAE(VAE):
        """A VAE trained on the 3-sample importance-weighted bound (a registry test)."""

        def _objective(self):
            return ImportanceWeightedBound(3, self.mc_samples, self.c, self.warmup_epochs)

    try:
        m = TinyVAE(hidden=(8,), epochs=2, verbose=False).fit(digits.data[:200])
        assert "train_iw_bound" in m.history_[0]
        again = latentlab.load(m.save(tmp_path / "m"))
        assert type(again) is TinyVAE
        assert evaluate(again, digits.data[:20], k=4)["log_likelihood"] < 0
    finally:
        MODELS.pop("test-iw-vae")


def test_a_model_without_a_likelihood_gets_the_metrics_that_apply(digits):
    from latentlab import Autoencoder
    from latentlab.evaluation import evaluate

    m = evaluate(Autoencoder(latent_dim=2, hidden=(8,), epochs=2, verbose=False).fit(digits.data), digits.data[:50])
    assert "reconstruction_mse" in m and "log_likelihood" not in m and "elbo" not in m


# ---------------------------------------------------------------------------------------- the family
def _neural_classes():
    from latentlab.models import MODELS
    from latentlab.models.neural import NeuralModel

    return {name: cls for name, cls in MODELS.items() if issubclass(cls, NeuralModel)}


def _documented(cls) -> dict[str, str]:
    """Parameter names of the class docstring's Parameters section -> their description, with the
    names listed on an "as for" line mapped to that line."""
    doc = inspect.getdoc(cls)
    section = re.search(r"Parameters\n-+\n(.*?)(?:\n\n[A-Z][A-Za-z ]+\n-+\n|\Z)", doc, re.S).group(1)
    out, names, desc = {}, [], []
    pending = ""
    for line in section.splitlines() + [""]:
        if line and not line[0].isspace():
            pending += " " + line.strip()
            if " :" in pending or pending.endswith(":"):
                for n in names:
                    out[n] = " ".join(desc)
                head, _, typ = pending.partition(" :")
                names = [n.strip() for n in head.split(",") if n.strip()]
                desc, pending = [typ.strip()], ""
        elif line.strip():
            desc.append(line.strip())
    for n in names:
        out[n] = " ".join(desc)
    return out


#: The settings every neural estimator takes from training (name -> default).
SHARED = {
    "hidden": (256, 128), "activation": "relu", "architecture": "mlp", "channels": (32, 64), "scale": None,
    "epochs": 1000, "batch_size": 64, "lr": 2e-3, "optimizer": "adam", "weight_decay": 0.0,
    "lr_schedule": "constant", "patience": 10, "tol": 1e-5, "validation_fraction": 0.1, "grad_clip": None, "ema": 0.999,
    "seed": 0, "device": "auto", "threads": None, "compile": False, "verbose": None, "checkpoint_dir": None,
}


@pytest.mark.parametrize("name", ["ae", "vae", "iwae", "vamp", "hvae", "cvae"])
def test_the_shared_training_settings_do_not_drift_apart(name):
    """Same names, same defaults in every neural estimator's signature, and each documented
    (in its own words or by "as for" another estimator that documents it)."""
    cls = _neural_classes()[name]
    params = inspect.signature(cls).parameters
    got = {k: params[k].default for k in SHARED if k in params}
    assert got == SHARED, f"{cls.__name__}: {set(SHARED) - set(got)} missing or defaults differ"
    docs = _documented(cls)
    missing = [k for k in params if k not in docs]
    assert missing == [], f"{cls.__name__} does not document {missing}"
    for k in SHARED:
        d = docs[k]
        if "as for" in d:
            other = re.search(r"as for :class:`~?(?:latentlab\.)?(\w+)`", d).group(1)
            assert k in _documented(getattr(__import__("latentlab"), other)), (cls.__name__, k, other)


def test_the_family_shares_one_method_signature():
    """Every estimator has transform(X, y=None), inverse_transform(Z, y=None), sample(n, y=None, ...),
    interpolate(...), reconstruct(X, y=None), code_size and capabilities."""
    from latentlab.models import MODELS

    for cls in MODELS.values():
        for meth, first in (("transform", ["X", "y"]), ("inverse_transform", ["Z", "y"]), ("reconstruct", ["X", "y"]),
                            ("sample", ["n", "y"]), ("interpolate", ["x_start", "x_end", "steps", "y"])):
            names = [p for p in inspect.signature(getattr(cls, meth)).parameters if p != "self"]
            assert names[: len(first)] == first, (cls.__name__, meth, names)
            assert "seed" in inspect.signature(cls.sample).parameters
        assert isinstance(cls.code_size, property) and isinstance(cls.capabilities, property)
