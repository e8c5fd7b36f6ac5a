"""Plotly figures for notebooks. Each function takes results or a model and returns a `plotly.graph_objects.Figure`."""
from __future__ import annotations

import plotly.graph_objects as go


def adapter_tap_figure(model) -> go.Figure:
    """Where each adapter reads the frozen backbone: backbone hidden states as a column, one column per adapter,
    an arrow from every tapped hidden state to the adapter layer that reads it, and the fusion on top."""
    depth = model.identity.num_hidden_layers
    names = model.adapter_names
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[0] * (depth + 1), y=list(range(depth + 1)), mode="markers+text", name="backbone (frozen)",
        marker=dict(size=18, symbol="square", color="lightgray", line=dict(color="gray", width=1)),
        text=["embeddings"] + [f"block {i}" for i in range(1, depth + 1)], textposition="middle left",
        hovertemplate="hidden state %{y}<extra>backbone</extra>",
    ))
    for column, name in enumerate(names, start=1):
        taps = model.adapters[name].tap_layers
        fig.add_trace(go.Scatter(
            x=[column] * len(taps), y=list(taps), mode="markers+lines", name=f"adapter '{name}'",
            marker=dict(size=16), hovertemplate=f"{name}: reads hidden state %{{y}}<extra></extra>",
        ))
        for tap in taps:
            fig.add_annotation(x=column, y=tap, ax=0, ay=tap, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=2, arrowwidth=1, opacity=0.6, text="")
    fusion_x = (len(names) + 1) / 2 if names else 0
    fig.add_trace(go.Scatter(
        x=[fusion_x], y=[depth + 1], mode="markers+text", name=f"fusion ({model.fusion.config.mode})",
        marker=dict(size=20, symbol="diamond"), text=[f"fusion: {model.fusion.config.mode}"],
        textposition="top center",
    ))
    fig.update_layout(
        title="K-Adapter: where the adapters tap the frozen backbone",
        xaxis=dict(tickvals=list(range(len(names) + 1)), ticktext=["backbone"] + names, range=[-1.5, len(names) + 0.7]),
        yaxis=dict(title="hidden-state index (0 = embeddings)", dtick=1), height=420 + 12 * depth,
    )
    return fig
