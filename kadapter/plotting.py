"""Plotly figures for notebooks. Each function takes results or a model and returns a `plotly.graph_objects.Figure`;
:func:`save_html` writes any of them to disk so that the page works offline."""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

PLOTLY_JS = "plotly.min.js"


def save_html(fig: go.Figure, path: str | Path) -> Path:
    """Write `fig` as a stand-alone HTML page that works offline: plotly.js is written once per folder as
    ``plotly.min.js`` beside the page (``include_plotlyjs="directory"``) and the page loads it from there, so
    many figures in one folder share one copy (a page moved elsewhere needs that file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="directory", full_html=True)
    if not (path.parent / PLOTLY_JS).is_file():  # plotly copies the bundle only for a str/Path file
        (path.parent / PLOTLY_JS).write_text(_plotly_js())
    return path


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def adapter_tap_figure(model) -> go.Figure:
    """Where each adapter reads the frozen backbone: backbone hidden states as a column in the middle, adapters in
    columns on alternating sides (first left, second right, ...), an arrow from every tapped hidden state to the
    adapter layer that reads it, and the fusion on top.

    An arrow never passes through another adapter's markers: the two nearest adapters sit right beside the
    backbone, and an arrow to an adapter further out arcs above the rows between."""
    depth = model.identity.num_hidden_layers
    names = list(model.adapter_names)
    columns = {name: (i // 2 + 1) * (-1 if i % 2 == 0 else 1) for i, name in enumerate(names)}
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[0] * (depth + 1), y=list(range(depth + 1)), mode="markers", name="backbone (frozen)",
        marker=dict(size=18, symbol="square", color="lightgray", line=dict(color="gray", width=1)),
        hovertemplate="hidden state %{y}<extra>backbone</extra>",
    ))
    for name, column in columns.items():
        taps = list(model.adapters[name].tap_layers)
        trace = go.Scatter(
            x=[column] * len(taps), y=taps, mode="markers+lines", name=f"adapter '{name}'", marker=dict(size=16),
            hovertemplate=f"{name}: reads hidden state %{{y}}<extra></extra>",
        )
        fig.add_trace(trace)
        side = 1 if column > 0 else -1
        for tap in taps:
            start = side * 0.06  # from the backbone marker's edge
            if abs(column) == 1:
                fig.add_annotation(x=column, y=tap, ax=start, ay=tap, **_ARROW)
                continue
            # over the nearer adapters: a quadratic Bézier peaking half a row above the tap
            lift = 1.0
            fig.add_shape(type="path", path=f"M {start},{tap} Q {(start + column) / 2},{tap + lift} {column},{tap}",
                          line=dict(color="rgba(60,60,60,0.6)", width=1), layer="below")
            t = 0.8  # the arrow's head along the last fifth of the curve
            bx = (1 - t) ** 2 * start + 2 * t * (1 - t) * (start + column) / 2 + t ** 2 * column
            by = tap + 2 * t * (1 - t) * lift
            fig.add_annotation(x=column, y=tap, ax=bx, ay=by, **_ARROW)
    top = depth + 1.2
    fig.add_trace(go.Scatter(
        x=[0], y=[top], mode="markers+text", name=f"fusion ({model.fusion.config.mode})",
        marker=dict(size=20, symbol="diamond"), text=[f"fusion: {model.fusion.config.mode}"],
        textposition="top center", hovertemplate="fusion<extra></extra>",
    ))
    for name, column in columns.items():  # every adapter's output, and the backbone's last state, feed the fusion
        last = max(model.adapters[name].tap_layers)
        fig.add_shape(type="line", x0=column, y0=last, x1=0, y1=top, line=dict(color="gray", width=1, dash="dot"),
                      layer="below")
    fig.add_shape(type="line", x0=0, y0=depth, x1=0, y1=top, line=dict(color="gray", width=1, dash="dot"),
                  layer="below")
    order = sorted(columns.values())
    ticks = sorted([0, *order])
    labels = {0: "backbone", **{c: n for n, c in columns.items()}}
    fig.update_layout(
        title="K-Adapter: where the adapters tap the frozen backbone",
        xaxis=dict(tickvals=ticks, ticktext=[labels[t] for t in ticks], range=[min(ticks) - 0.6, max(ticks) + 0.6],
                   zeroline=False),
        yaxis=dict(title="hidden state read", tickvals=list(range(depth + 1)),
                   ticktext=["embeddings"] + [f"block {i}" for i in range(1, depth + 1)], range=[-0.7, top + 0.9]),
        height=420 + 14 * depth, legend=dict(orientation="h", y=-0.12),
    )
    return fig


_ARROW = dict(xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2, arrowwidth=1.2,
              arrowcolor="rgba(60,60,60,0.8)", standoff=9, text="")


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
    longest = max((len(s) for s in settings), default=0)
    fig.update_layout(  # legend above the plot and a bottom margin sized to the slanted labels: nothing is cut
        title=title or f"{metric} by setting (mean ± std over seeds)", barmode="group",
        yaxis=dict(title=f"{metric} (%)"), xaxis=dict(title="setting", tickangle=-30, automargin=True),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0), height=480 + 4 * longest,
        margin=dict(b=60 + 5 * longest, t=110),
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


def topk_figure(predictions: dict, title: str = "", columns: int | None = None) -> go.Figure:
    """One horizontal bar chart per model in a grid (``columns`` per row; default 1-3 by count), each with its
    top-k fillers (best on top), their probabilities as labels, and its model name wrapped over lines as the title
    (``{model: [(token, probability), ...]}``, e.g. :func:`kadapter.probing.compare_topk`). Readable for 1-8
    models from ~600 px wide: panels never share a row with more than two others."""
    from plotly.subplots import make_subplots

    names = list(predictions)
    n = max(1, len(names))
    columns = columns or (n if n <= 3 else 2 if n == 4 else 3)
    rows = -(-n // columns)
    k = max((len(v) for v in predictions.values()), default=0)
    titles = [_wrap(name, 34 if columns == 3 else 48) for name in names]
    title_lines = max((t.count("<br>") + 1 for t in titles), default=1)
    panel = 30 + 24 * max(k, 1)  # px per panel's plot area
    gap = 36 + 16 * title_lines  # px between rows: x ticks + the next row's titles
    header = 70 + 16 * title_lines
    height = header + rows * panel + (rows - 1) * gap + 50
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.14 if columns > 1 else 0,
                        vertical_spacing=gap / (height - header - 50) if rows > 1 else 0)
    for i, name in enumerate(names):
        row, column = i // columns + 1, i % columns + 1
        # ranked labels, best on top: two fillers that decode alike ("the", "Ġthe") stay two bars
        tokens = [f"{rank}. {t} " for rank, (t, _) in enumerate(predictions[name], start=1)][::-1]
        probs = [p for _, p in predictions[name]][::-1]
        fig.add_trace(go.Bar(x=probs, y=tokens, orientation="h", name=name, showlegend=False,
                             text=[format_probability(p) for p in probs], textposition="outside", cliponaxis=False,
                             textfont=dict(size=12),
                             hovertemplate="%{y}: %{x:.4f}<extra>" + name + "</extra>"), row=row, col=column)
        top = max(probs, default=1.0) or 1.0
        fig.update_xaxes(range=[0, top * 1.35], nticks=4, tickformat=".2~r", row=row, col=column)
        fig.update_yaxes(tickfont=dict(size=12), automargin=True, row=row, col=column)
        if row == rows or i + columns >= len(names):
            fig.update_xaxes(title_text="probability", title_font=dict(size=11), row=row, col=column)
    for annotation in fig.layout.annotations:  # the panel titles
        annotation.font = dict(size=13)
    fig.update_layout(title=dict(text=_wrap(title, 90), x=0.01), height=height, margin=dict(t=header, b=50, l=10),
                      bargap=0.25)
    return fig


def format_probability(p: float) -> str:
    """0.306 -> "0.306", 0.00312 -> "0.0031": three decimals, or two significant digits below 0.01."""
    return f"{p:.3f}" if p >= 0.01 else f"{p:.2g}"


def _wrap(text: str, width: int) -> str:
    """Break `text` into lines of at most `width` characters at spaces (plotly titles do not wrap by themselves)."""
    import textwrap

    return "<br>".join(textwrap.wrap(text, width, break_long_words=False)) or text


# ----------------------------------------------------------------------------------------------- data preparation
def relation_frequency_figure(per_relation: dict, min_examples: int | None = None, top: int | None = None,
                              title: str = "Factual pre-training set: examples per relation") -> go.Figure:
    """Examples per relation (train and dev stacked), most frequent first, with the minimum count as a line.

    `per_relation` is the builder's ``report["per_relation"]`` (``{PID: {name, train, dev}}``,
    :func:`data_prep.factual.build_factual_dataset`); `top` keeps the most frequent relations only.
    """
    ranked = sorted(per_relation.items(), key=lambda kv: -(kv[1]["train"] + kv[1]["dev"]))[:top]
    labels = [f"{pid} {info['name']}" for pid, info in ranked]
    fig = go.Figure()
    for split in ("train", "dev"):
        fig.add_trace(go.Bar(name=split, x=labels, y=[info[split] for _, info in ranked],
                             hovertemplate="%{x}<br>" + split + ": %{y:,}<extra></extra>"))
    if min_examples:
        fig.add_hline(y=min_examples, line_dash="dot", line_color="black",
                      annotation_text=f"minimum {min_examples} examples", annotation_position="top right")
    fig.update_layout(title=title, barmode="stack", yaxis=dict(title="examples"),
                      xaxis=dict(tickangle=-60), height=520, legend=dict(orientation="h", y=1.08))
    return fig


_ARC_BASE = 0.3  # arcs start this far above (below) the words, so that they never cross the text


def _arc_height(dependent: int, head: int) -> float:
    return _ARC_BASE + 0.5 + 0.35 * abs(dependent - head)


def _arc_path(dependent: int, head: int, above: bool) -> str:
    """An SVG quadratic Bézier from a head word to its dependent, taller for longer arcs, above or below the words.
    (A quadratic Bézier peaks halfway to its control point, hence the control point at twice the height.)"""
    sign = 1 if above else -1
    base, control = sign * _ARC_BASE, sign * (2 * _arc_height(dependent, head) - _ARC_BASE)
    return f"M {head},{base} Q {(head + dependent) / 2},{control} {dependent},{base}"


def dependency_arcs_figure(words, heads, predicted_heads=None, title: str = "",
                           gold_name: str = "gold (UD)", predicted_name: str = "spaCy") -> go.Figure:
    """A sentence's dependency arcs: `heads` above the words, `predicted_heads` (optional) below, each predicted
    arc green where it agrees with `heads` and red where not. Heads are 1-based word indices, 0 = ROOT (drawn at
    x = 0). An arrow's tip (the triangle) sits on the dependent."""
    n = len(words)
    if len(heads) != n or (predicted_heads is not None and len(predicted_heads) != n):
        raise ValueError(f"{n} words but {len(heads)} heads" + (
            f" and {len(predicted_heads)} predicted heads" if predicted_heads is not None else ""))
    fig = go.Figure()
    rows = [(heads, True, "royalblue", gold_name)]
    if predicted_heads is not None:
        rows.append((predicted_heads, False, None, predicted_name))
    top = 1.0
    for row_heads, above, colour, name in rows:
        tips_x, tips_colour, hover = [], [], []
        for dependent, head in enumerate(row_heads, start=1):
            agree = predicted_heads is None or heads[dependent - 1] == head
            arc_colour = colour or ("seagreen" if agree else "crimson")
            fig.add_shape(type="path", path=_arc_path(dependent, head, above), line=dict(color=arc_colour, width=1.5))
            tips_x.append(dependent)
            tips_colour.append(arc_colour)
            hover.append(f"{words[dependent - 1]} ← {'ROOT' if head == 0 else words[head - 1]}")
            top = max(top, _arc_height(dependent, head))
        fig.add_trace(go.Scatter(x=tips_x, y=[_ARC_BASE if above else -_ARC_BASE] * n, mode="markers", name=name,
                                 marker=dict(symbol="triangle-down" if above else "triangle-up", size=9,
                                             color=tips_colour),
                                 text=hover, hovertemplate="%{text}<extra>" + name + "</extra>"))
    fig.add_trace(go.Scatter(x=list(range(n + 1)), y=[0] * (n + 1), mode="text", text=["ROOT", *words],
                             textfont=dict(size=13), showlegend=False, hoverinfo="skip"))
    if predicted_heads is not None:
        agreed = sum(h == p for h, p in zip(heads, predicted_heads))
        title = title or f"{gold_name} above, {predicted_name} below: {agreed}/{n} heads agree"
    bottom = -top - 0.2 if predicted_heads is not None else -0.6
    fig.update_layout(title=title or gold_name, height=int(160 + 45 * (top - bottom)),
                      xaxis=dict(visible=False, range=[-0.8, n + 0.8]),
                      yaxis=dict(visible=False, range=[bottom, top + 0.2]),
                      legend=dict(orientation="h", y=1.1), plot_bgcolor="white")
    return fig


def comparison_figure(comparisons, title: str = "paired differences (95% bootstrap CI)") -> go.Figure:
    """Each :class:`kadapter.statistics.Comparison` as a point at its difference (variant − reference) with its
    confidence interval as error bars; a vertical line at zero. Labels read "variant − reference"."""
    comparisons = list(comparisons)
    labels = [f"{c.variant} − {c.reference}" for c in comparisons]
    colors = ["#1f77b4" if not c.excludes_zero else ("#2ca02c" if c.delta > 0 else "#d62728") for c in comparisons]
    fig = go.Figure(go.Scatter(
        x=[c.delta for c in comparisons], y=labels, mode="markers", marker=dict(size=9, color=colors),
        error_x=dict(type="data", symmetric=False, array=[c.ci_high - c.delta for c in comparisons],
                     arrayminus=[c.delta - c.ci_low for c in comparisons], visible=True),
        customdata=[[c.p_mcnemar if c.p_mcnemar is not None else float("nan"), c.n_items, c.n_seeds]
                    for c in comparisons],
        hovertemplate="%{y}: Δ = %{x:+.3f}<br>McNemar p = %{customdata[0]:.3g}<br>"
                      "%{customdata[1]} items × %{customdata[2]} seeds<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="black", dash="dot"))
    metrics = {c.metric for c in comparisons}
    metric = metrics.pop() if len(metrics) == 1 else " (each row's own metric)"
    fig.update_layout(title=title, xaxis=dict(title=f"Δ{metric}"), yaxis=dict(autorange="reversed"),
                      height=max(260, 34 * len(comparisons) + 140), margin=dict(l=320))
    return fig
