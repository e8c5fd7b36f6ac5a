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


def results_bar_chart(
    summary,
    metric: str,
    title: str = "",
    splits: tuple[str, ...] = ("dev", "test"),
    reference: dict[str, float] | None = None,
    reference_label: str = "paper (different backbone and setting)",
) -> go.Figure:
    """Mean ± std over seeds per setting, one bar group per setting and one colour per split.

    `summary` is a table (pandas DataFrame or list of dicts) with a `setting` column and `{split}_mean`,
    `{split}_std`, fractions in [0, 1]; it is plotted in percent. `reference` maps setting names to published
    numbers (percent); they are drawn as separate labelled markers, never as bars, so they cannot be mistaken for
    our measurements.
    """
    rows = summary.to_dict("records") if hasattr(summary, "to_dict") else list(summary)
    settings = [r["setting"] for r in rows]
    fig = go.Figure()
    for split in splits:
        if not any(f"{split}_mean" in r for r in rows):
            continue
        fig.add_trace(go.Bar(
            name=split, x=settings, y=[100 * r.get(f"{split}_mean", float("nan")) for r in rows],
            error_y=dict(type="data", array=[100 * r.get(f"{split}_std", 0.0) for r in rows], visible=True),
            customdata=[r.get("n_seeds", 1) for r in rows],
            hovertemplate="%{x}<br>" + split + ": %{y:.2f} ± %{error_y.array:.2f} (%{customdata} seeds)<extra></extra>",
        ))
    if reference:
        shown = [s for s in settings if s in reference]
        fig.add_trace(go.Scatter(
            name=reference_label, x=shown, y=[reference[s] for s in shown], mode="markers",
            marker=dict(symbol="diamond-open", size=12, color="black", line=dict(width=2)),
            hovertemplate="%{x}: %{y:.2f}<extra>" + reference_label + "</extra>",
        ))
    fig.update_layout(
        title=title or f"{metric} by setting (mean ± std over seeds)", barmode="group",
        yaxis=dict(title=f"{metric} (%)"), xaxis=dict(title="setting", tickangle=-30), legend=dict(orientation="h"),
    )
    return fig


# ------------------------------------------------------------------------------------------------- LAMA probing
def lama_relation_figure(per_relation: dict, variants, title: str = "LAMA T-REx: P@1 per relation",
                         metric_label: str = "P@1") -> go.Figure:
    """Per-relation P@1 (mean ± std over probe-head seeds) of each model variant, with the majority-object
    baseline as markers. `per_relation` is :func:`kadapter.probing.relation_p_at_1`'s output."""
    relations = list(per_relation)
    labels = [f"{r} (n={per_relation[r]['facts']})" for r in relations]
    fig = go.Figure()
    for variant in variants:
        means = [per_relation[r][variant][0] for r in relations]
        stds = [per_relation[r][variant][1] for r in relations]
        fig.add_trace(go.Bar(name=variant, x=labels, y=means, error_y=dict(type="data", array=stds, visible=True)))
    fig.add_trace(go.Scatter(name="majority object", x=labels, y=[per_relation[r]["majority"] for r in relations],
                             mode="markers", marker=dict(symbol="line-ew-open", size=14, color="black")))
    fig.update_layout(title=title, barmode="group", yaxis=dict(title=metric_label, range=[0, 1]),
                      xaxis=dict(tickangle=-60), height=480, legend=dict(orientation="h", y=1.12))
    return fig


def lama_summary_figure(rows, metrics=("p@1", "p@10", "mrr"), title: str = "LAMA: macro average over relations"
                        ) -> go.Figure:
    """Macro P@1 / P@10 / MRR per model (mean ± std over seeds), from :func:`kadapter.probing.summary_rows`."""
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    fig = go.Figure()
    for metric in metrics:
        fig.add_trace(go.Bar(name=metric.upper().replace("MRR", "MRR"), x=[r["model"] for r in rows],
                             y=[r[metric] for r in rows],
                             error_y=dict(type="data", array=[r[f"{metric} std"] for r in rows], visible=True)))
    fig.update_layout(title=title, barmode="group", yaxis=dict(title="score", range=[0, 1]), height=420)
    return fig


def topk_figure(predictions: dict, title: str = "") -> go.Figure:
    """Side-by-side horizontal bars: one panel per model, its top-k fillers and their probabilities
    (``{model: [(token, probability), ...]}``, e.g. :func:`kadapter.probing.compare_topk`)."""
    from plotly.subplots import make_subplots

    names = list(predictions)
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=names, horizontal_spacing=0.12)
    for column, name in enumerate(names, start=1):
        tokens = [t for t, _ in predictions[name]][::-1]  # best on top
        probs = [p for _, p in predictions[name]][::-1]
        fig.add_trace(go.Bar(x=probs, y=[f"{t} " for t in tokens], orientation="h", name=name, showlegend=False,
                             text=[f"{p:.3f}" for p in probs], textposition="auto",
                             hovertemplate="%{y}: %{x:.4f}<extra>" + name + "</extra>"), row=1, col=column)
        fig.update_xaxes(title_text="probability", row=1, col=column)
    k = max((len(v) for v in predictions.values()), default=0)
    fig.update_layout(title=title, height=max(260, 40 + 28 * k))
    return fig
