"""Harness adapter for xlmr_torch (see tests/cross/harness.py for the protocol)."""

from __future__ import annotations

import numpy as np
import torch

import xlmr_torch


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64 if value.is_floating_point() else value.dtype).numpy()
    if isinstance(value, (tuple, list)):
        return tuple(_to_numpy(v) for v in value)
    return value


def _to_torch(value):
    if isinstance(value, np.ndarray):
        # Adapters hand back float64 outputs (e.g. a cache); models run in float32.
        return torch.from_numpy(value.astype(np.float32) if value.dtype == np.float64 else value)
    if isinstance(value, (tuple, list)):
        return tuple(_to_torch(v) for v in value)
    return value


class Adapter:
    name = "torch"

    def load(self, directory, head, **config_overrides):
        model = getattr(xlmr_torch, f"XLMRoberta{head}").from_pretrained(directory, **config_overrides)
        return model.eval()

    def save(self, model, directory):
        model.save_pretrained(directory)

    def forward(self, model, inputs, **options):
        model.eval()
        with torch.no_grad():
            out = model(**{k: _to_torch(v) for k, v in {**inputs, **options}.items()}, return_dict=True)
        return {k: _to_numpy(v) for k, v in out.items()}

    def loss_and_grads(self, model, inputs, **options):
        model.eval()  # dropout off, gradients still flow
        model.zero_grad()
        loss = model(**{k: _to_torch(v) for k, v in inputs.items()}, **options, return_dict=True).loss
        loss.backward()
        grads = {name: _to_numpy(p.grad) for name, p in model.named_parameters() if p.grad is not None}
        return float(loss.detach()), grads

    def sgd_step(self, model, inputs, learning_rate):
        model.eval()
        optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
        optimizer.zero_grad()
        model(**{k: _to_torch(v) for k, v in inputs.items()}, return_dict=True).loss.backward()
        optimizer.step()
        return {name: _to_numpy(p) for name, p in model.named_parameters()}

    def random_checkpoint(self, config, head, directory, seed=0):
        """Save a model of `head` whose every weight is random (no zero biases, no unit
        LayerNorm), so a swapped or transposed tensor anywhere shows in the outputs."""
        torch.manual_seed(seed)
        model = getattr(xlmr_torch, f"XLMRoberta{head}")(config)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        model.save_pretrained(directory)
        return model
