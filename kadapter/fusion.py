"""Fusion of the backbone's last hidden state with the adapters' outputs."""
from __future__ import annotations

import torch
from torch import nn

from .config import FusionConfig


class Fusion(nn.Module):
    """`concat` (paper): per adapter Linear(2H -> H) on [backbone ; adapter], then Linear(kH -> H) over the k results.
    `add`: backbone + sum of adapter outputs (no parameters). With no adapters the backbone passes through.
    """

    def __init__(self, config: FusionConfig, hidden_size: int):
        super().__init__()
        self.config = config
        names = config.adapter_names
        if config.mode == "concat" and names:
            self.per_adapter = nn.ModuleDict({n: nn.Linear(2 * hidden_size, hidden_size) for n in names})
            self.combine = nn.Linear(len(names) * hidden_size, hidden_size)

    def forward(self, backbone_last: torch.Tensor, adapter_states: dict[str, torch.Tensor]) -> torch.Tensor:
        names = self.config.adapter_names
        if set(adapter_states) != set(names):
            raise ValueError(f"fusion expects adapters {names}, got {sorted(adapter_states)}")
        if not names:
            return backbone_last
        backbone_last = backbone_last.to(adapter_states[names[0]].dtype)
        if self.config.mode == "add":
            return backbone_last + sum(adapter_states[n] for n in names)
        per_adapter = [self.per_adapter[n](torch.cat([backbone_last, adapter_states[n]], dim=-1)) for n in names]
        return self.combine(torch.cat(per_adapter, dim=-1))

    @torch.no_grad()
    def init_identity(self) -> "Fusion":
        """Start as the identity on the backbone: ``concat`` weights set so the fused vector equals the backbone's
        last hidden state whatever the adapters output (per adapter ``[I ; 0]``, then the mean of the k results),
        so a head trained on the backbone — a causal LM's own LM head — reads it unchanged at step 0 and training
        moves away from there. (``add`` has no weights: it is the identity only while the adapters output ~0.)"""
        if self.config.mode != "concat" or not self.config.adapter_names:
            return self
        k = len(self.config.adapter_names)
        for linear in self.per_adapter.values():
            hidden = linear.out_features
            linear.weight.zero_()
            linear.weight[:, :hidden] = torch.eye(hidden)
            linear.bias.zero_()
        self.combine.weight.copy_(torch.eye(self.combine.out_features).repeat(1, k) / k)
        self.combine.bias.zero_()
        return self
