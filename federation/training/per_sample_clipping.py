"""The sum of per-sample gradients, each clipped to L2 norm C over all parameters jointly.

This is the part of DP-SGD that the privacy analysis bounds: one record moves the sum by
at most C. Two ways to compute it, both returning the same numbers as Opacus's
``DPOptimizer.clip_and_accumulate`` (clip factor ``min(1, C / (norm + 1e-6))``):

- ``"linear"``: for a ``nn.Sequential`` of ``nn.Linear`` layers and elementwise
  activations on 2-D inputs. The gradient of sample i for a linear layer is the outer
  product of its output gradient g_i and its input a_i, so its squared norm is
  ``|g_i|^2 (|a_i|^2 + 1)`` (the 1 is the bias) and the clipped sum is ``(c * G)^T A``:
  one forward, one backward to the layer outputs, a few matrix products, and no
  per-sample gradient is ever stored (Opacus's "ghost" norms, without its second pass).
- ``"functorch"``: any module, with per-sample gradients from ``torch.func``
  (``vmap`` of ``grad``), flattened to one ``(batch, parameters)`` matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

PerSampleLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(output, target)`` -> one loss per sample (shape ``[batch]``)."""

# Modules that act on each sample's own row only and hold no parameters.
_ROWWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.SiLU, nn.Identity)
_CLIP_EPS = 1e-6  # Opacus's guard against a zero norm; kept so results match it exactly


def supports_linear(model: nn.Module) -> bool:
    """Whether the closed form applies: a flat Sequential of Linear and row-wise layers."""
    return type(model) is nn.Sequential and all(
        isinstance(layer, nn.Linear) or (isinstance(layer, _ROWWISE) and not any(layer.parameters())) for layer in model
    )


def clip_factors(*, squared_norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """Opacus's per-sample factors: ``min(1, C / (norm + 1e-6))``."""
    return squared_norms.sqrt().add_(_CLIP_EPS).reciprocal_().mul_(max_grad_norm).clamp_(max=1.0)


class LinearClipper:
    """Clipped gradient sums for a ``supports_linear`` model, written into one flat vector
    laid out like ``torch.cat([p.reshape(-1) for p in model.parameters()])``."""

    def __init__(self, *, model: nn.Module, per_sample_loss: PerSampleLoss, max_grad_norm: float) -> None:
        if not supports_linear(model):
            raise ValueError(
                "the 'linear' per-sample path needs an nn.Sequential of nn.Linear and element-wise "
                f"activation layers; got {model!r}. Use the 'functorch' path for other models."
            )
        self._loss = per_sample_loss
        self._max_grad_norm = float(max_grad_norm)
        # Resolved once: module attribute look-ups and isinstance checks cost microseconds
        # per step, which is what this path exists to save.
        self._layers: list[nn.Linear | nn.Module] = list(model)
        self._linears = [layer for layer in self._layers if isinstance(layer, nn.Linear)]
        self._is_linear = [isinstance(layer, nn.Linear) for layer in self._layers]
        self._slices: list[tuple[int, tuple[int, ...], int | None]] = []  # (offset, weight shape, bias size)
        offset = 0
        for layer in self._linears:
            bias = None if layer.bias is None else layer.bias.numel()
            self._slices.append((offset, tuple(layer.weight.shape), bias))
            offset += layer.weight.numel() + (bias or 0)
        self._views: tuple[int, list[tuple[torch.Tensor, torch.Tensor | None]]] | None = None

    def _out_views(self, out: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per-layer (weight, bias) views of ``out``, cached while ``out`` is the same buffer."""
        if self._views is None or self._views[0] != out.data_ptr():
            views = []
            for offset, shape, bias in self._slices:
                size = shape[0] * shape[1]
                w = out[offset : offset + size].view(shape)
                views.append((w, None if bias is None else out[offset + size : offset + size + bias]))
            self._views = (out.data_ptr(), views)
        return self._views[1]

    def __call__(self, *, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the clipped sum into ``out``; return the batch's summed loss (detached)."""
        if x.dim() != 2:
            raise ValueError(f"the 'linear' per-sample path needs 2-D inputs (batch, features); got {tuple(x.shape)}")
        inputs, outputs = [], []
        h = x
        for layer, linear in zip(self._layers, self._is_linear, strict=False):
            if linear:
                inputs.append(h.detach())
                h = F.linear(h, layer.weight, layer.bias)
                if not h.requires_grad:  # parameters are frozen: gradients are taken at layer outputs
                    h.requires_grad_()
                outputs.append(h)
            else:
                h = layer(h)
        loss = self._loss(h, y).sum()
        output_grads = torch.autograd.grad(loss, outputs)

        squared = None
        for layer, a, g in zip(self._linears, inputs, output_grads, strict=False):
            a_sq = torch.linalg.vecdot(a, a)
            layer_sq = torch.linalg.vecdot(g, g).mul_(a_sq.add_(1.0) if layer.bias is not None else a_sq)
            squared = layer_sq if squared is None else squared.add_(layer_sq)
        factors = clip_factors(squared_norms=squared, max_grad_norm=self._max_grad_norm).unsqueeze(1)

        for (weight, bias), a, g in zip(self._out_views(out), inputs, output_grads, strict=False):
            scaled = g * factors  # not in place: a loss's gradient may be an expanded view
            torch.mm(scaled.T, a, out=weight)
            if bias is not None:
                torch.sum(scaled, dim=0, out=bias)
        return loss.detach()


class FunctorchClipper:
    """Clipped gradient sums for any module, from per-sample gradients by ``torch.func``."""

    def __init__(self, *, model: nn.Module, per_sample_loss: PerSampleLoss, max_grad_norm: float) -> None:
        self._model = model
        self._loss = per_sample_loss
        self._max_grad_norm = float(max_grad_norm)
        self._names = [name for name, _ in model.named_parameters()]

        def one_loss(params: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor):
            output = functional_call(self._model, params, (xi.unsqueeze(0),))
            loss = self._loss(output, yi.unsqueeze(0)).sum()
            return loss, loss.detach()  # the loss comes back as aux: no second forward

        self._per_sample = vmap(grad(one_loss, has_aux=True), in_dims=(None, 0, 0), randomness="different")

    def __call__(self, *, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the clipped sum into ``out``; return the batch's summed loss (detached)."""
        params = {name: p.detach() for name, p in self._model.named_parameters()}
        grads, losses = self._per_sample(params, x, y)
        flat = torch.cat([grads[name].reshape(len(x), -1) for name in self._names], dim=1)
        factors = clip_factors(squared_norms=torch.linalg.vecdot(flat, flat), max_grad_norm=self._max_grad_norm)
        torch.mv(flat.T, factors, out=out)
        return losses.sum()


def make_clipper(
    *, model: nn.Module, per_sample_loss: PerSampleLoss, max_grad_norm: float, method: str = "auto"
) -> LinearClipper | FunctorchClipper:
    """The fastest exact path for ``model``: ``"linear"`` when it applies, else ``"functorch"``."""
    if method == "auto":
        method = "linear" if supports_linear(model) else "functorch"
    if method == "linear":
        return LinearClipper(model=model, per_sample_loss=per_sample_loss, max_grad_norm=max_grad_norm)
    if method == "functorch":
        return FunctorchClipper(model=model, per_sample_loss=per_sample_loss, max_grad_norm=max_grad_norm)
    raise ValueError(f"method must be 'auto', 'linear' or 'functorch'; got {method!r}")
