"""The estimators' side of your own networks and likelihoods: check them, build them, check them
on the first batch, and resolve them again when a saved model is loaded.

A network parameter (``encoder``, ``decoder``; ``likelihood`` of the VAE family, ``loss`` of the
autoencoder) holds None or a name for the built-in ones, or one of your own: a ``torch.nn.Module``
instance, a :class:`latentlab.nn.ModuleSpec`, or a spec's text ``"package.module:Name(k=v)"``
(see :mod:`latentlab.nn.spec`).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..nn.distributions import Likelihood
from ..nn.networks import BatchFlatten
from ..nn.spec import INSTANCE, ModuleSpec, is_network_record

__all__ = ["is_own", "check_own", "build_own", "likelihood_name", "check_first_batch", "resolve_saved_networks",
           "trusted_code", "trusting", "NAMED"]

#: The network parameters whose plain strings are names of built-in choices ("gaussian", "mse"),
#: not specs: there, only a string with a ":" is a spec.
NAMED = ("likelihood", "loss")

_TRUST: contextvars.ContextVar[bool] = contextvars.ContextVar("latentlab_trust_code", default=False)


def is_own(value: Any, param: str) -> bool:
    """Whether the parameter ``param``'s value is a network of your own (module, spec or spec text)."""
    if isinstance(value, (nn.Module, ModuleSpec)):
        return True
    if isinstance(value, str):
        return param not in NAMED or ":" in value
    return False


def _kind(param: str) -> type:
    return Likelihood if param in NAMED else nn.Module


def check_own(value: Any, param: str, owner: str) -> None:
    """A ConfigError for a value that is no module, spec or spec text (a spec's text is parsed)."""
    if isinstance(value, str):
        ModuleSpec.parse(value)
        return
    kind = _kind(param)
    if isinstance(value, ModuleSpec) or isinstance(value, kind):
        return
    what = "a latentlab.nn.Likelihood" if kind is Likelihood else "a torch.nn.Module"
    raise ConfigError(
        f"{owner}: {param} must be None (the built-in network), {what}, a latentlab.nn.ModuleSpec or its text "
        f"'package.module:Name(k=v)'; got {type(value).__name__}."
    )


def build_own(value: Any, param: str) -> nn.Module:
    """A fresh network from the parameter's value: a copy of a module (yours is left untouched), or
    what a spec builds."""
    if isinstance(value, nn.Module):
        net = copy.deepcopy(value)
    else:
        spec = value if isinstance(value, ModuleSpec) else ModuleSpec.parse(value)
        net = spec.build()
    kind = _kind(param)
    if not isinstance(net, kind):
        raise ConfigError(f"{param}= built a {type(net).__name__}, which is not a {kind.__module__}.{kind.__name__}; "
                          "subclass latentlab.nn.Likelihood for a likelihood of your own.")
    return net


def likelihood_name(lik: Likelihood) -> str:
    """The name a likelihood is recorded under: its ``name``, else its class name."""
    return getattr(lik, "name", "") or type(lik).__name__


# ---------------------------------------------------------------------------------------- first batch
def _net(m: nn.Module) -> nn.Module:
    return m.net if isinstance(m, BatchFlatten) else m


def _run(fn, hooked: nn.Module | None, what: str, seen: dict, owner: str, hint: str, want: tuple, meaning: str):
    """``fn()``, with the input and output of ``hooked`` (your network) recorded in ``seen``; an
    exception raised inside your network becomes a ConfigError naming the input it got, a wrong
    output shape one naming both shapes."""
    handles, inputs = [], {}
    if hooked is not None:
        def pre(mod, inp):
            inputs.setdefault(what, tuple(inp[0].shape) if inp and torch.is_tensor(inp[0]) else ())

        def post(mod, inp, out):
            seen.setdefault(what, (inputs.get(what, ()), out))
        handles = [hooked.register_forward_pre_hook(pre), hooked.register_forward_hook(post)]
    try:
        result = fn()
    except Exception as exc:
        if hooked is None:
            raise
        if what not in seen:
            raise ConfigError(f"{owner}: your {what} failed on its input of shape {inputs.get(what, '?')}{hint} "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())}).") from exc
        _check_shape(seen, what, want, owner, meaning)
        raise
    finally:
        for h in handles:
            h.remove()
    _check_shape(seen, what, want, owner, meaning)
    return result


def _check_shape(seen: dict, what: str, want: tuple, owner: str, meaning: str) -> None:
    if what not in seen:
        return
    inp, out = seen[what]
    got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
    if got != want:
        raise ConfigError(f"{owner}: your {what} maps its input of shape {inp} to {got}, but it must give {want}: "
                          f"{meaning}.")


def check_first_batch(est, module: nn.Module, batch, own: set[str], encoder_width: int) -> None:
    """Run ``module`` on (up to) two training examples and check the shapes of your own networks'
    outputs (and of your likelihood's results), with an error that names both shapes.

    ``encoder_width`` is the encoder's output width (latent_dim, or 2 * latent_dim for the mean and
    log-variance of a VAE's posterior).
    """
    if not own:
        return
    x = batch[0][:2]
    c = batch[1][:2] if len(batch) > 1 else None
    B, S, K = x.shape[0], tuple(x.shape[1:]), int(est.latent_dim)
    owner = f"{type(est).__name__}(latent_dim={K})"
    arch = getattr(est, "architecture", "mlp")
    hint = f" (x of shape {tuple(x.shape)}" + (" with the condition beside it" if c is not None else "")
    hint += (f"; with architecture={arch!r} the networks get " + (
        "flat rows (B, n_features): pass architecture='conv' for images (B, C, H, W))" if arch == "mlp"
        else "images (B, C, H, W))"))
    seen: dict = {}
    W = int(encoder_width)
    meaning = ("the mean and the log-variance of q(z|x) side by side, 2 * latent_dim values per example"
               if W == 2 * K else "the code, latent_dim values per example")
    was_training = module.training
    module.eval()  # no batch-norm statistics updated, no dropout, by this probe
    try:
        _probe(module, x, c, own, seen, owner, hint, (B, W), meaning, (B, *S))
    finally:
        module.train(was_training)


def _probe(module, x, c, own, seen, owner, hint, enc_shape, meaning, dec_shape) -> None:
    with torch.no_grad():
        q = _run(lambda: module.encode(x, c), module.encoder if "encoder" in own else None, "encoder", seen, owner,
                 hint, enc_shape, meaning)
        z = q if torch.is_tensor(q) else q.mean
        dec = _net(module.decoder) if "decoder" in own else None
        out = _run(lambda: module.decode(z, c), dec, "decoder", seen, owner, "", dec_shape,
                   "the likelihood's parameters, one value per feature of an example, shaped like the examples the "
                   "networks take")
        if own & set(NAMED):
            _check_likelihood(module.likelihood, x, out, owner)


def _check_likelihood(lik, x, out, owner: str) -> None:
    B = x.shape[0]
    cases = [("log_prob(x, out)", lambda: lik.log_prob(x, out), (B,), "one log-density per example, summed over "
              "the features"),
             ("log_prob(x, out) for out with a leading sample dimension", lambda: lik.log_prob(x, out.expand(2, *out.shape)),
              (2, B), "(k, B) for out of shape (k, B, ...) and x of shape (B, ...), as the importance-weighted "
              "bounds call it"),
             ("mean(out)", lambda: lik.mean(out), tuple(out.shape), "the reconstruction, shaped like out")]
    for what, fn, want, meaning in cases:
        try:
            got = fn()
        except Exception as exc:
            raise ConfigError(f"{owner}: your likelihood's {what} failed for x of shape {tuple(x.shape)} and out of shape "
                              f"{tuple(out.shape)} ({type(exc).__name__}: {' '.join(str(exc).split())}).") from exc
        shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
        if shape != want:
            raise ConfigError(f"{owner}: your likelihood's {what} has shape {shape}, but it must be {want}: {meaning}.")


# ---------------------------------------------------------------------------------------- loading
@contextlib.contextmanager
def trusted_code(trust: bool = True) -> Iterator[None]:
    """Within the block, :func:`latentlab.load` (and everything that opens a run) rebuilds networks
    from the ``package.module:Name`` specs saved models record, importing those modules, as
    ``load(path, trust_code=True)`` does. Only for files you trust: importing a module runs its code.

    >>> import latentlab
    >>> with latentlab.trusted_code():
    ...     pass  # latentlab.api.evaluate("runs/my-conv-vae") here may import the run's networks
    """
    token = _TRUST.set(bool(trust))
    try:
        yield
    finally:
        _TRUST.reset(token)


def trusting() -> bool:
    """Whether the code of saved specs may be imported here (inside :func:`trusted_code`)."""
    return _TRUST.get()


def _saved_as_own(value: Any, param: str) -> bool:
    return is_network_record(value) or (isinstance(value, str) and is_own(value, param))


def resolve_saved_networks(cls: type, params: Mapping[str, Any], networks: Mapping[str, Any], trust: bool | None,
                           where: str) -> dict[str, Any]:
    """The constructor parameters of a saved model, with its own networks ready to build: the ones
    handed back in ``networks``, or (with ``trust``) the specs it recorded. A CheckpointError names
    every network that is neither, and the two ways to give it."""
    trust = trusting() if trust is None else bool(trust)
    names = tuple(getattr(cls, "network_params", ()))
    unknown = sorted(set(networks) - set(names))
    if unknown:
        raise ConfigError(f"{cls.__name__} takes no network {unknown[0]!r}; its networks are {', '.join(names) or 'none'}.")
    out, missing = dict(params), []
    for name in names:
        value, given = params.get(name), networks.get(name)
        if given is not None:
            if not _saved_as_own(value, name):
                raise ConfigError(f"{where} was fitted with the built-in {name} ({value!r}); drop {name}= from load.")
            check_own(given, name, cls.__name__)
            out[name] = given
        elif is_network_record(value) and value["network"] == INSTANCE:
            missing.append((name, f"an instance of {value.get('class')}", None))
        elif _saved_as_own(value, name):
            spec = ModuleSpec.from_record(value) if is_network_record(value) else ModuleSpec.parse(value)
            out[name] = spec
            if not trust:
                missing.append((name, spec.text(), spec))
    if missing:
        raise CheckpointError(_missing_message(where, missing))
    return out


def _missing_message(where: str, missing: list) -> str:
    parts, specs = [], []
    for name, what, spec in missing:
        parts.append(f"its {name} is {what}")
        if spec is not None:
            specs.append(spec.target.partition(":")[0])
    handed = ", ".join(f"{n}=..." for n, _, _ in missing)
    text = f"{where} was fitted with networks of your own ({'; '.join(parts)}). Hand them back, load(path, {handed}), "
    text += "built like the ones fitted (the weights are read from model.safetensors)"
    if specs:
        text += (f"; or let latentlab import {', '.join(sorted(set(specs)))} and build them from the recorded specs: "
                 "load(path, trust_code=True), --trust-code on the command line; importing a module runs its code, "
                 "so only for files you trust")
    return text + "."
