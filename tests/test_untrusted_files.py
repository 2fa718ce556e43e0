"""Untrusted files: every loader, fed random, truncated or mutated bytes, raises latentlab's own
error or returns data, and nothing is ever unpickled (issue 7, sections 4 and 5).

Each fuzz target starts from a valid file of its kind and lets hypothesis pick one of: random
bytes, a truncation of the valid file, or the valid file with a few bytes overwritten. The
structured targets (checkpoint metadata, a model's config.json, run.json) replace or delete one
entry of a valid file with random JSON.
"""

import gzip
import hashlib
import io
import json
import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import latentlab
from latentlab import PCA, VAE, TrainConfig, api
from latentlab.datasets import load as load_source
from latentlab.datasets import load_images, load_npy, load_npz, load_table, read_amat, read_idx
from latentlab.errors import CheckpointError, DataError, LatentlabError
from latentlab.io import load_tensors, save_tensors
from latentlab.objectives import ELBO
from latentlab.training import ArrayData, train
from latentlab.training.trainer import CHECKPOINT_NAME, read_checkpoint

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: a failure here is reproducible
)


# ------------------------------------------------------------------ valid seed files
def _npy_bytes():
    buf = io.BytesIO()
    np.save(buf, np.arange(24, dtype=np.float32).reshape(6, 4) / 24)
    return buf.getvalue()


def _npz_bytes():
    buf = io.BytesIO()
    a = (np.arange(40).reshape(10, 4) % 2).astype(np.uint8)
    np.savez_compressed(buf, train=a, valid=a[:3], test=a[:2])
    return buf.getvalue()


def _csv_bytes():
    return b"a,b,c\n0.5,1,2\n1.5,-3,4e2\n,7,8\n"


def _png_bytes():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(48).reshape(6, 8) * 5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 3).astype(np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _amat_bytes():
    rows = (np.arange(5 * 16).reshape(5, 16) * 7 % 3 == 0).astype(int)
    return "".join(" ".join(map(str, r)) + "\n" for r in rows).encode()


def _idx_bytes():
    a = (np.arange(3 * 4 * 5) % 256).astype(np.uint8).reshape(3, 4, 5)
    return bytes([0, 0, 0x08, 3]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()


def damaged(valid: bytes):
    """Random bytes, a truncation of ``valid``, or ``valid`` with a few bytes overwritten."""
    random_bytes = st.binary(max_size=300)
    truncated = st.integers(0, max(0, len(valid) - 1)).map(lambda k: valid[:k])

    @st.composite
    def mutated(draw):
        b = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        return bytes(b)

    return st.one_of(random_bytes, truncated, mutated())


def only_latentlab_errors(fn, *args, **kwargs):
    """Call ``fn``; a LatentlabError is a pass, any other exception fails the test."""
    try:
        return fn(*args, **kwargs)
    except LatentlabError:
        return None


def _write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------ file loaders
@FUZZ
@given(data=damaged(_npy_bytes()))
def test_load_npy(tmp_path, data):
    ds = only_latentlab_errors(load_npy, _write(tmp_path, "x.npy", data))
    if ds is not None:  # whatever loaded is usable: the checks at the boundary pass or say why
        only_latentlab_errors(latentlab.validation.as_array, ds.data)


@FUZZ
@given(data=damaged(_npz_bytes()))
def test_load_npz(tmp_path, data):
    p = _write(tmp_path, "x.npz", data)
    only_latentlab_errors(load_npz, p)
    only_latentlab_errors(load_npz, p, "train")


@FUZZ
@given(data=damaged(_csv_bytes()))
def test_load_table(tmp_path, data):
    only_latentlab_errors(load_table, _write(tmp_path, "x.csv", data))
    only_latentlab_errors(load_table, _write(tmp_path, "x.tsv", data))


@FUZZ
@given(data=st.one_of(damaged(_png_bytes()), damaged(_jpeg_bytes())))
def test_load_images(tmp_path, data):
    folder = tmp_path / "imgs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "good.png").write_bytes(_png_bytes())
    (folder / ("bad.jpg" if data[:2] == b"\xff\xd8" else "bad.png")).write_bytes(data)
    only_latentlab_errors(load_images, folder)


@FUZZ
@given(data=damaged(_amat_bytes()), gz=st.booleans())
def test_read_amat(tmp_path, data, gz):
    if gz:
        data = gzip.compress(data) if len(data) % 3 else data[: len(data) // 2]  # some gzip, some not
    only_latentlab_errors(read_amat, _write(tmp_path, "x.amat.gz" if gz else "x.amat", data))


@FUZZ
@given(data=damaged(_idx_bytes()), gz=st.booleans())
def test_read_idx(tmp_path, data, gz):
    if gz:
        data = gzip.compress(data) if len(data) % 3 else data
    p = _write(tmp_path, "t-images-idx3-ubyte.gz" if gz else "t-images-idx3-ubyte", data)
    only_latentlab_errors(read_idx, p)
    only_latentlab_errors(load_source, p)  # the same through the one entry point


# ------------------------------------------------------------------ checkpoints and saved models
def _tiny_module(seed=0):
    torch.manual_seed(seed)
    est = VAE(latent_dim=2, hidden=(4,), likelihood="bernoulli")
    est.input_shape_, est.n_features_in_, est.likelihood_ = (6,), 6, "bernoulli"
    return est._build_module()


_X = (torch.rand(40, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
_CFG = TrainConfig(epochs=2, batch_size=16, patience=None, progress=False, seed=1)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    p = tmp_path_factory.mktemp("ck") / CHECKPOINT_NAME
    cfg = TrainConfig(epochs=1, batch_size=16, patience=None, progress=False, seed=1)
    train(_tiny_module(), ELBO(), ArrayData([_X], torch.device("cpu")), None, cfg, checkpoint=p)
    return p.read_bytes()


def _resume_from(path: Path):
    """read_checkpoint, then a resumed training from it (which reads every entry)."""
    read_checkpoint(path)
    train(_tiny_module(), ELBO(), ArrayData([_X], torch.device("cpu")), None, _CFG, checkpoint=path, resume=True)


@FUZZ
@given(data=st.data())
def test_checkpoint_bytes(tmp_path, checkpoint_bytes, data):
    raw = data.draw(damaged(checkpoint_bytes))
    only_latentlab_errors(_resume_from, _write(tmp_path, CHECKPOINT_NAME, raw))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _replace_one(draw, d: dict) -> dict:
    """A copy of ``d`` with one entry (maybe nested one level) deleted or replaced by random JSON."""
    d = json.loads(json.dumps(d))
    target = d
    key = draw(st.sampled_from(sorted(d)))
    if isinstance(d[key], dict) and d[key] and draw(st.booleans()):
        target, key = d[key], draw(st.sampled_from(sorted(d[key])))
    if draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(json_values)
    return d


@FUZZ
@given(data=st.data())
def test_checkpoint_metadata(tmp_path, checkpoint_bytes, data):
    src = _write(tmp_path, "good.safetensors", checkpoint_bytes)
    tensors, meta = load_tensors(src)
    meta = _replace_one(data.draw, meta)
    if data.draw(st.booleans()):  # and one tensor of the wrong shape or gone
        key = data.draw(st.sampled_from(sorted(tensors)))
        if data.draw(st.booleans()):
            del tensors[key]
        else:
            tensors[key] = torch.zeros(data.draw(st.integers(0, 5)), 3)
    p = tmp_path / CHECKPOINT_NAME
    save_tensors(p, tensors, meta)
    only_latentlab_errors(_resume_from, p)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """{name: directory} of saved PCA and VAE models."""
    root = tmp_path_factory.mktemp("models")
    X = np.random.default_rng(0).random((30, 6)).astype(np.float32)
    return {
        "pca": PCA(latent_dim=2).fit(X).save(root / "pca"),
        "vae": VAE(latent_dim=2, hidden=(4,), epochs=1, verbose=False).fit(X).save(root / "vae"),
    }


def _copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


@FUZZ
@given(data=st.data(), which=st.sampled_from(["pca", "vae"]), part=st.sampled_from(["model.safetensors", "config.json"]))
def test_load_with_damaged_bytes(tmp_path, saved_models, data, which, part):
    d = _copy(saved_models[which], tmp_path / "m")
    raw = data.draw(damaged((d / part).read_bytes()))
    (d / part).write_bytes(raw)
    if part == "model.safetensors" and data.draw(st.booleans()):
        # without the checksum, the damaged weights themselves are parsed and checked
        cfg = json.loads((d / "config.json").read_text())
        cfg.pop("weights_sha256")
        (d / "config.json").write_text(json.dumps(cfg))
    only_latentlab_errors(latentlab.load, d)


@FUZZ
@given(data=st.data(), which=st.sampled_from(["pca", "vae"]))
def test_load_with_damaged_config(tmp_path, saved_models, data, which):
    d = _copy(saved_models[which], tmp_path / "m")
    cfg = _replace_one(data.draw, json.loads((d / "config.json").read_text()))
    (d / "config.json").write_text(json.dumps(cfg))
    only_latentlab_errors(latentlab.load, d)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run") / "r"
    api.fit(api.RunConfig("pca", "digits", {"latent_dim": 2}, eval_k=2), d)
    return d


@FUZZ
@given(data=st.data())
def test_run_json(tmp_path, run_dir, data):
    d = _copy(run_dir, tmp_path / "r")
    raw = (d / "run.json").read_text()
    if data.draw(st.booleans()):
        (d / "run.json").write_bytes(data.draw(damaged(raw.encode())))
    else:
        (d / "run.json").write_text(json.dumps(_replace_one(data.draw, json.loads(raw))))
    only_latentlab_errors(api.open_run, d, None, load_data=False)
    only_latentlab_errors(api.resume, d)  # PCA has nothing to resume: a ConfigError at best


# ------------------------------------------------------------------ explicit guarantees
class _Trap:
    """Unpickling this would create the file ``path`` (a stand-in for running any code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "unpickled"
    bad = np.array([_Trap(marker), 1], dtype=object)
    np.save(tmp_path / "obj.npy", bad, allow_pickle=True)
    np.savez(tmp_path / "obj.npz", x=bad)
    assert not marker.exists()
    for p in (tmp_path / "obj.npy", tmp_path / "obj.npz", tmp_path / "obj.npz:x"):
        with pytest.raises(DataError, match=r"not a readable|numeric"):
            load_source(p)
    with pytest.raises(DataError):
        load_npy(tmp_path / "obj.npy")
    with pytest.raises(DataError, match="holds objects"):
        load_npz(tmp_path / "obj.npz")
    # a pickle inside a zip named like a model or checkpoint is not read either
    with zipfile.ZipFile(tmp_path / "model.safetensors", "w") as z:
        import pickle

        z.writestr("data.pkl", pickle.dumps(_Trap(marker)))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_tensors(tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "model.safetensors")
    assert not marker.exists()


@pytest.mark.parametrize("which", ["pca", "vae"])
def test_tensor_shapes_are_checked_against_the_config(tmp_path, saved_models, which):
    d = _copy(saved_models[which], tmp_path / "m")
    tensors, _ = load_tensors(d / "model.safetensors")
    key = next(k for k in sorted(tensors) if tensors[k].ndim == 2)
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    save_tensors(d / "model.safetensors", tensors)
    cfg = json.loads((d / "config.json").read_text())
    cfg["weights_sha256"] = hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=rf"{key}.*shape.*need.*save the model again|{key} has shape .* the model needs"):
        latentlab.load(d)
    # and a config whose settings disagree with the weights
    d2 = _copy(saved_models[which], tmp_path / "m2")
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["params"]["latent_dim"] = 3
    (d2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"shape .*(need|the model needs)"):
        latentlab.load(d2)


def test_incompatible_versions_name_both(tmp_path, saved_models, checkpoint_bytes, run_dir):
    from latentlab import __version__

    d = _copy(saved_models["vae"], tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(format_version=99, latentlab_version="9.9.9")
    (d / "config.json").write_text(json.dumps(cfg))
    both = rf"latentlab 9\.9\.9 .*format 99.*this latentlab \({__version__}\) reads format 1.*matching latentlab version"
    with pytest.raises(CheckpointError, match=both):
        latentlab.load(d)

    tensors, meta = load_tensors(_write(tmp_path, "ck.safetensors", checkpoint_bytes))
    meta.update(format_version=99, latentlab_version="9.9.9")
    save_tensors(tmp_path / CHECKPOINT_NAME, tensors, meta)
    with pytest.raises(CheckpointError, match=both):
        read_checkpoint(tmp_path / CHECKPOINT_NAME)

    r = _copy(run_dir, tmp_path / "r")
    info = json.loads((r / "run.json").read_text())
    info.update(format_version=99, latentlab_version="9.9.9")
    (r / "run.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=both):
        api.open_run(r, load_data=False)


def test_a_checkpoint_with_damaged_values_stops_cleanly(tmp_path, checkpoint_bytes):
    """NaN weights in a checkpoint are a divergence at the first step, not a crash or a silent run."""
    tensors, meta = load_tensors(_write(tmp_path, "ck.safetensors", checkpoint_bytes))
    key = next(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())
    tensors[key] = torch.full_like(tensors[key], math.nan)
    save_tensors(tmp_path / CHECKPOINT_NAME, tensors, meta)
    with pytest.raises(latentlab.DivergenceError, match="epoch 2, step 1"):
        _resume_from(tmp_path / CHECKPOINT_NAME)
