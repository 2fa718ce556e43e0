"""A fused training step for the most common VAE: MLP encoder and decoder, Bernoulli likelihood.

``torch.autograd`` records every small operation of the ELBO and replays it backwards; for an MLP
VAE on a CPU that bookkeeping and the extra passes over (B, F) tensors add about 40% to the time
the matrix multiplies need. Here the negative ELBO and its gradient are derived by hand: the same
matrix multiplies, elementwise work fused into a few passes, the 1/B of the mean folded into the
multiplies, and the Bernoulli term and its gradient computed from one sigmoid.

For binary x and logits l, with s = 2x - 1 and q = sigmoid(s * l):
    log p(x|z) = sum_j log q_j,        d(-log p)/dl = s (q - 1) = (1 - q)(1 - 2x) = sigmoid(l) - x.
For z = mu + exp(lv / 2) * eps and KL = 0.5 * sum(mu^2 + exp(lv) - lv - 1):
    dKL/dmu = mu,   dKL/dlv = 0.5 (exp(lv) - 1),   dz/dmu = 1,   dz/dlv = 0.5 exp(lv / 2) eps.

Two ways in, one piece of maths:
- :func:`fused_bernoulli_elbo` is an ``autograd.Function`` (one graph node), which ``ELBO`` uses
  whenever :func:`supports` says the module qualifies (it works under DistributedDataParallel);
- :func:`fused_step` computes the loss and writes every parameter's gradient straight into
  ``param.grad`` (no allocation, no accumulation), which the trainer uses on one process with the
  parameters in one flat buffer (:mod:`latentlab.training.flat`).
Tests check both against plain autograd.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..nn.distributions import Bernoulli
from ..nn.modules import VAEModule

__all__ = ["supports", "fused_bernoulli_elbo", "fused_step"]

_RELU, _TANH = 1, 2


def _layers(seq: nn.Module):
    """[(Linear, activation code), ...] for an MLP of Linear and ReLU/Tanh layers, else None."""
    if not isinstance(seq, nn.Sequential):
        return None
    mods, out, i = list(seq), [], 0
    while i < len(mods):
        lin = mods[i]
        if type(lin) is not nn.Linear or lin.bias is None:
            return None
        act = 0
        if i + 1 < len(mods):
            nxt = mods[i + 1]
            if type(nxt) is nn.ReLU:
                act = _RELU
            elif type(nxt) is nn.Tanh:
                act = _TANH
            else:
                return None
            i += 1
        out.append((lin, act))
        i += 1
    if not out or out[-1][1] != 0:  # the last layer has no activation
        return None
    return out


def _plan(module):
    """(encoder layers, decoder layers) or None, cached on the module (its structure is fixed)."""
    key = (id(module.encoder), id(module.decoder), id(module.likelihood))
    cached = module.__dict__.get("_fused_plan")
    if cached is not None and cached[0] == key:
        return cached[1]
    enc, dec = _layers(module.encoder), _layers(module.decoder)
    ok = enc is not None and dec is not None and type(module.likelihood) is Bernoulli
    plan = (enc, dec) if ok else None
    module.__dict__["_fused_plan"] = (key, plan)
    return plan


def supports(module, x: torch.Tensor | None, mc_samples: int, free_bits: float) -> bool:
    """Whether the fused step computes exactly this module's ELBO (for batches like ``x``)."""
    return (
        type(module) is VAEModule
        and mc_samples == 1
        and free_bits == 0
        and (x is None or (x.dim() == 2 and x.dtype == torch.float32))
        and _plan(module) is not None
    )


def _params(plan):
    return [p for lin, _ in plan[0] + plan[1] for p in (lin.weight, lin.bias)]


def _mlp_forward(h, layers, keep):
    for lin, act in layers:
        h = torch.addmm(lin.bias, h, lin.weight.t())
        if act == _RELU:
            h = h.relu_()
        elif act == _TANH:
            h = h.tanh_()
        keep.append(h)
    return h


def _forward(x, eps, plan):
    """The negative ELBO's parts for a batch; returns (rec_sum, kl_sum, saved for backward)."""
    enc, dec = plan
    enc_out: list = []
    e = _mlp_forward(x, enc, enc_out)  # (B, 2D)
    D = e.shape[1] // 2
    mu, lv = e[:, :D], e[:, D:]
    std = torch.exp(0.5 * lv)
    z = torch.addcmul(mu, std, eps)  # (B, D)
    dec_out: list = []
    logits = _mlp_forward(z, dec, dec_out)  # (B, F)
    t = torch.addcmul(torch.neg(logits), logits, x, value=2.0)  # s * logits = (2x - 1) * logits
    q = torch.sigmoid(t)  # probability of the observed value
    rec_sum = -torch.log(q).sum()
    if not torch.isfinite(rec_sum):  # q underflowed (a logit beyond about -88): exact formula
        rec_sum = -F.logsigmoid(t).sum()
    var = std * std
    kl_sum = 0.5 * (mu * mu + var - lv - 1.0).sum()
    saved = (x, eps, z, std, var, mu, q, enc_out[:-1], dec_out[:-1])
    return rec_sum, kl_sum, saved


def _mlp_backward(grad, layers, inputs, outs, grads, scale, need_input_grad=True):
    """Back through ``layers`` given d(loss)/d(output) / ``scale``; writes (dW, db) into
    ``grads[i]`` (a pair of tensors to fill, or None to allocate). inputs[i] fed layer i, outs[i]
    is its activation output. The scale rides in the multiplies' alpha, not in extra passes."""
    for i in range(len(layers) - 1, -1, -1):
        lin, act = layers[i]
        if act == _RELU:
            grad = torch.ops.aten.threshold_backward(grad, outs[i], 0.0)
        elif act == _TANH:  # 1 - y^2
            grad = grad * (1.0 - outs[i] * outs[i])
        dw, db = grads[i] if grads[i] is not None else (torch.empty_like(lin.weight), torch.empty_like(lin.bias))
        torch.addmm(dw, grad.t(), inputs[i], beta=0.0, alpha=scale, out=dw)
        torch.sum(grad, 0, out=db)
        if scale != 1.0:
            db.mul_(scale)
        grads[i] = (dw, db)
        if i > 0 or need_input_grad:
            if scale != 1.0:
                grad = torch.addmm(inputs[i], grad, lin.weight, beta=0.0, alpha=scale)
                scale = 1.0
            else:
                grad = torch.mm(grad, lin.weight)
    return grad


def _backward(saved, plan, w: float, g: float, grads):
    """Gradients of g * (rec + w * kl) / B; ``grads`` is a list of (dW, db) per layer (encoder
    layers then decoder layers), each a pair of tensors to overwrite, or None to allocate."""
    enc, dec = plan
    x, eps, z, std, var, mu, q, enc_hidden, dec_hidden = saved
    gb = g / x.shape[0]
    ne = len(enc)
    r = torch.rsub(q, 1.0)
    dlogits = torch.addcmul(r, r, x, value=-2.0)  # s (q - 1) = (1 - q)(1 - 2x); times gb below
    dec_grads = grads[ne:]
    dz = _mlp_backward(dlogits, dec, [z, *dec_hidden], [*dec_hidden, None], dec_grads, gb)
    wg = w * gb
    dmu = torch.add(dz, mu, alpha=wg)
    dlv = (dz * eps).mul_(0.5 * std).add_(var - 1.0, alpha=0.5 * wg)
    de = torch.cat([dmu, dlv], dim=1)
    enc_grads = grads[:ne]
    _mlp_backward(de, enc, [x, *enc_hidden], [*enc_hidden, None], enc_grads, 1.0, need_input_grad=False)
    grads[:ne] = enc_grads
    grads[ne:] = dec_grads
    return grads


class _BernoulliELBO(torch.autograd.Function):
    """loss = mean_i [-log p(x_i|z_i) + w KL_i]; also the mean rec and KL (no gradient)."""

    @staticmethod
    def forward(ctx, x, eps, w, plan, *params):
        rec_sum, kl_sum, saved = _forward(x, eps, plan)
        B = x.shape[0]
        rec, kl = rec_sum / B, kl_sum / B
        ctx.saved = saved
        ctx.plan, ctx.w = plan, float(w)
        ctx.mark_non_differentiable(rec, kl)
        return rec + ctx.w * kl, rec, kl

    @staticmethod
    def backward(ctx, g, _g_rec, _g_kl):
        plan = ctx.plan
        grads = _backward(ctx.saved, plan, ctx.w, float(g), [None] * (len(plan[0]) + len(plan[1])))
        del ctx.saved
        return (None, None, None, None, *[t for pair in grads for t in pair])


def _eps(x, D):
    # Drawn exactly as DiagonalGaussian.rsample draws it, so a seed gives the same numbers.
    return torch.randn((x.shape[0], D), device=x.device, dtype=x.dtype)


def fused_bernoulli_elbo(module, x: torch.Tensor, kl_weight: float):
    """(loss, rec, kl) for a batch through one autograd node: loss = rec + kl_weight * kl, means
    over the batch in nats. Same random draws as the autograd path, so the same numbers."""
    plan = _plan(module)
    return _BernoulliELBO.apply(x, _eps(x, module.latent_dim), kl_weight, plan, *_params(plan))


def fused_step(module, kl_weight_fn):
    """A training step that writes gradients in place: ``step(x, progress) -> (loss, rec, kl)``.

    Every parameter of the module must be one of the MLP layers' weights and biases (true for
    the VAEModule that :func:`supports` accepts) and must already have a ``.grad`` tensor, which
    is overwritten (not accumulated). Under DistributedDataParallel use the autograd path instead.
    """
    plan = _plan(module)
    layers = [lin for lin, _ in plan[0] + plan[1]]
    D = module.latent_dim

    def step(x, progress):
        w = kl_weight_fn(progress)
        with torch.no_grad():
            rec_sum, kl_sum, saved = _forward(x, _eps(x, D), plan)
            B = x.shape[0]
            rec, kl = rec_sum / B, kl_sum / B
            _backward(saved, plan, w, 1.0, [(lin.weight.grad, lin.bias.grad) for lin in layers])
        return rec + w * kl, rec, kl

    return step
