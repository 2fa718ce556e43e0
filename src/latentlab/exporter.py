"""Export a fitted model's encoder and decoder as ONNX or TorchScript files.

Two files and a description: ``encoder.onnx`` and ``decoder.onnx`` (``.pt`` for TorchScript) and
``export.json``, which names every input and output with its shape and meaning. The data scaling
is folded in: the encoder takes the data as the user has it, (batch, *input_shape) float32, and
returns the codes ``transform`` returns (for the VAE family the posterior means; with ``logvar``
also their log-variances); the decoder returns what ``inverse_transform`` returns, the decoder's
mean E[x|z] in the data's units (for a Bernoulli decoder, probabilities, not logits). The batch
dimension is dynamic. A conditional VAE's encoder and decoder take the condition as a second
input ``y``: (batch, m) float rows, one-hot in the order of ``export.json``'s ``classes`` for
class labels (class probabilities decode between classes).

ONNX files come from ``torch.onnx.export(..., dynamo=True)``, PyTorch's default exporter since
2.9 (it needs ``onnxscript``: ``pip install latentlab[export]``); where it is missing or fails, the
legacy TorchScript-based exporter (deprecated by PyTorch) is tried, and ``export.json`` records
which one wrote the files. TorchScript files come from ``torch.jit.trace`` and load with
``torch.jit.load`` (both deprecated by PyTorch in favour of ``torch.export``, and still working).

Example
-------
>>> import numpy as np, tempfile
>>> from latentlab import PCA
>>> from latentlab.exporter import export
>>> X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
>>> info = export(PCA(latent_dim=2).fit(X), tempfile.mkdtemp(), format="torchscript")
>>> info["encoder"]["file"], info["decoder"]["outputs"][0]["shape"]
('encoder.pt', ['batch', 4])
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .errors import ConfigError
from .io import atomic_write_text, jsonable
from .models.base import LatentModel
from .models.registry import load, model_name

__all__ = ["export", "FORMATS", "MANIFEST", "EXPORT_FORMAT"]

#: Export format -> file suffix.
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
#: The description written beside the files.
MANIFEST = "export.json"
EXPORT_FORMAT = 1


@contextlib.contextmanager
def _quiet():
    """The exporters' deprecation warnings and log lines (e.g. "torchvision is not installed")
    are about PyTorch, not the user's model: silenced while exporting."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _condition(model: LatentModel) -> dict[str, Any] | None:
    if not model.conditional:
        return None
    classes = getattr(model, "classes_", None)
    info: dict[str, Any] = {"input": "y", "width": int(model.n_cond_), "kind": getattr(model, "condition_", "continuous")}
    if classes is not None:
        info["classes"] = jsonable(np.asarray(classes).tolist())
        info["encoding"] = ("one row per example, one column per class in the order of 'classes': one-hot for a "
                            "label, class probabilities to decode between classes")
    else:
        info["encoding"] = "the side-input vector of each example, as given to fit"
    return info


def _specs(model: LatentModel, logvar: bool) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """(encoder inputs, encoder outputs, decoder inputs, decoder outputs): name, shape, meaning."""
    shape = ["batch", *[int(s) for s in model.input_shape_]]
    K = int(model.code_size)
    posterior = "posterior" in model.capabilities
    lik = getattr(model, "likelihood_", None) or getattr(model, "loss", None)
    x_in = {"name": "x", "shape": shape, "dtype": "float32",
            "meaning": "data in the units it was fitted on (the model's scaling is folded in)"}
    z_mean = "posterior means E[z|x] (what transform returns)" if posterior else "codes (what transform returns)"
    z_out = [{"name": "z", "shape": ["batch", K], "dtype": "float32", "meaning": z_mean}]
    if logvar:
        z_out.append({"name": "z_logvar", "shape": ["batch", K], "dtype": "float32",
                      "meaning": "posterior log-variances log Var[z|x]"})
    what = {"bernoulli": "probabilities (the sigmoid of the decoder's logits)",
            "continuous_bernoulli": "the continuous Bernoulli's means (not its parameter lambda)"}.get(lik, "")
    x_out = [{"name": "x", "shape": shape, "dtype": "float32",
              "meaning": "decoded data E[x|z] in the data's units (what inverse_transform returns)" + (f": {what}" if what else "")}]
    z_in = {"name": "z", "shape": ["batch", K], "dtype": "float32", "meaning": "codes"}
    cond = _condition(model)
    y_in = [] if cond is None else [{"name": "y", "shape": ["batch", cond["width"]], "dtype": "float32",
                                     "meaning": "the condition: " + cond["encoding"]}]
    return [x_in, *y_in], z_out, [z_in, *y_in], x_out


def _examples(model: LatentModel, inputs: list[dict]) -> tuple[torch.Tensor, ...]:
    """Example inputs with a batch of 2 (a batch of 1 would be taken for a constant)."""
    out = []
    for spec in inputs:
        t = torch.zeros(2, *spec["shape"][1:], dtype=torch.float32)
        if spec["name"] == "y":
            t[:, 0] = 1.0
        out.append(t)
    return tuple(out)


def _onnx(module, args, inputs, outputs, file: Path, opset: int | None) -> str:
    """Write ``module`` as ONNX with a dynamic batch dimension; the exporter used, in words."""
    names_in, names_out = [s["name"] for s in inputs], [s["name"] for s in outputs]
    kw = {} if opset is None else {"opset_version": int(opset)}
    errors = []
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)

        batch = torch.export.Dim("batch")
        torch.onnx.export(module, args, str(file), input_names=names_in, output_names=names_out,
                          dynamic_shapes=tuple({0: batch} for _ in args), dynamo=True, external_data=False,
                          verbose=False, **kw)
        return "torch.onnx.export(dynamo=True)"
    except ImportError as exc:
        errors.append(f"onnxscript is not installed ({exc})")
    except Exception as exc:  # noqa: BLE001 - any failure of the new exporter: try the legacy one
        errors.append(f"dynamo exporter: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    try:
        torch.onnx.export(module, args, str(file), input_names=names_in, output_names=names_out,
                          dynamic_axes={n: {0: "batch"} for n in names_in + names_out}, dynamo=False, **kw)
    except Exception as exc:  # noqa: BLE001
        errors.append(f"legacy exporter: {type(exc).__name__}: {exc}")
        raise ConfigError(
            "the model could not be exported to ONNX (" + "; ".join(errors) + "); try format='torchscript', "
            "or install onnxscript (pip install latentlab[export])."
        ) from None
    return "torch.onnx.export(dynamo=False), the legacy exporter (" + "; ".join(errors) + ")"


def _torchscript(module, args, file: Path) -> str:
    traced = torch.jit.trace(module, args)
    torch.jit.save(traced, str(file))
    return "torch.jit.trace"


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}; got {format!r}.")
    return format


def export(model, out=None, format: str = "onnx", *, logvar: bool = False, opset: int | None = None) -> dict[str, Any]:
    """Write the encoder and the decoder of a fitted model as two files, with ``export.json``.

    Parameters
    ----------
    model : a fitted estimator (PCA, Autoencoder, VAE and family), or a run / saved-model directory
    out : folder to write (default for a directory: ``<model>/export``; required for an estimator)
    format : {"onnx", "torchscript"}
    logvar : the VAE family: the encoder also returns the posterior log-variances (``z_logvar``)
    opset : ONNX opset version (default: the exporter's)

    Returns
    -------
    dict: the contents of ``export.json`` (files, inputs, outputs and shapes, the condition of a
    conditional model, the exporter used), with ``"path"``: the folder written.

    Example
    -------
    ``latentlab.export(vae, "exported")`` writes ``exported/encoder.onnx``, ``exported/decoder.onnx``
    and ``exported/export.json``; with onnxruntime::

        enc = onnxruntime.InferenceSession("exported/encoder.onnx")
        z, = enc.run(None, {"x": X.astype("float32")})      # == vae.transform(X)
    """
    format = _check_format(format)
    if isinstance(model, (str, os.PathLike)):
        out = Path(model) / "export" if out is None else out
        model = load(model)
    if not isinstance(model, LatentModel):
        raise ConfigError(f"export takes a fitted latentlab estimator or a run directory, got {type(model).__name__}.")
    if out is None:
        raise ConfigError("export needs out=FOLDER for the files (encoder, decoder, export.json).")
    out = Path(out)
    enc, dec = model.torch_modules(logvar=logvar)
    enc_in, enc_out, dec_in, dec_out = _specs(model, logvar)
    suffix = FORMATS[format]
    out.mkdir(parents=True, exist_ok=True)
    parts = {"encoder": (enc, enc_in, enc_out), "decoder": (dec, dec_in, dec_out)}
    info: dict[str, Any] = {"format": "latentlab-export", "format_version": EXPORT_FORMAT, "latentlab_version": __version__,
                            "torch_version": torch.__version__, "model": model_name(model), "class": type(model).__name__,
                            "export_format": format, "input_shape": list(model.input_shape_), "code_size": int(model.code_size),
                            "likelihood": getattr(model, "likelihood_", None) or getattr(model, "loss", None),
                            "scaling_folded_in": getattr(model, "scale", None), "condition": _condition(model)}
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp, _quiet(), torch.no_grad():
        for part, (module, inputs, outputs) in parts.items():
            file = Path(tmp) / f"{part}{suffix}"
            args = _examples(model, inputs)
            how = _onnx(module, args, inputs, outputs, file, opset) if format == "onnx" else _torchscript(module, args, file)
            info[part] = {"file": file.name, "inputs": inputs, "outputs": outputs}
            info["exporter"] = how
        for part in parts:
            os.replace(Path(tmp) / info[part]["file"], out / info[part]["file"])
    atomic_write_text(out / MANIFEST, json.dumps(info, indent=2))
    return {**info, "path": str(out)}
