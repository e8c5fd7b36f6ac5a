"""The probing demo: type a cloze sentence, pick adapter combinations, see each one's top-k fillers side by side.

A thin widget shell. Every prediction goes through one function, :func:`predict` (today
:func:`kadapter.probing.compare_topk`: each probe's ``topk``, a masked-LM probe's ``predict_topk`` or, on a causal LM,
the next token after the text before the blank), every figure through
:func:`kadapter.plotting.topk_figure` and every table through :func:`result_html` — the same calls the papermill path
of ``notebooks/05_probing_demo.ipynb`` makes, so tests can drive the handler headless and compare.

Input is checked before predicting (:func:`check_cloze`): an empty text, no blank or several blanks get a message
saying what to type; ``[mask]`` in any case is read as ``[MASK]`` (and said so). A prediction that fails with a
``ValueError`` (e.g. a model that cannot fill a blank there) shows its message the same way, and so does any other
error (with its type). A text longer than the model reads is refused before predicting, saying the limit
(:func:`max_prompt_tokens`); ``k`` must lie in the slider's range, 1 to 30 (:func:`check_k`). A message replaces the
previous chart and table, so nothing stale stays on screen.
"""
from __future__ import annotations

import html
import re
from typing import Mapping, Sequence

import ipywidgets as widgets

from .model import KAdapterModel
from .plotting import format_probability, topk_figure
from .probing import CandidateVocabulary, MaskedLMProbe, compare_topk

MASK = "[MASK]"
_ANY_CASE_MASK = re.compile(r"\[\s*mask\s*\]", re.IGNORECASE)


def best_probing_backbone() -> tuple[str | None, str]:
    """The backbone the demo uses by default, and why: Gemma 3 270M when it is installed (a real language model with
    its own LM head, so the blank gets facts, not frequent words), else the default MiniLM (None)."""
    from .aliases import GEMMA_270M, backbone_cache_root, gemma_package

    if (backbone_cache_root() / GEMMA_270M / "model.safetensors").is_file():
        return GEMMA_270M, f"{GEMMA_270M} (installed: a causal LM with its own head; it fills a blank at the end)"
    try:
        gemma_package()
    except ImportError:
        return None, ("the default MiniLM (it has no language-model head, so expect frequent words; "
                      f"install {GEMMA_270M} for a model that knows facts: pip install -e \".[gemma]\")")
    return GEMMA_270M, f"{GEMMA_270M} (installed: a causal LM with its own head; it fills a blank at the end)"


# Prompts from the paper's probing examples, plus LAMA-style ones.
EXAMPLE_PROMPTS = (
    "The official language of Mauritius is [MASK].",
    "Ravens can [MASK].",
    "Dante was born in [MASK].",
    "iPod Touch is produced by [MASK].",
    "The capital of France is [MASK].",
)
CUSTOM = "(your own sentence)"
SNAPSHOT_CLASS = "kadapter-demo-snapshot"


K_RANGE = (1, 30)  # the widget's slider; the library call takes the same range, so both paths agree


class ClozeError(ValueError):
    """Input the demo cannot predict for; the message says what to type instead."""


def check_k(k) -> int:
    """``k`` as the demo takes it: a whole number in :data:`K_RANGE` (the slider would clamp anything else)."""
    low, high = K_RANGE
    if isinstance(k, bool) or not isinstance(k, int) or not low <= k <= high:
        raise ValueError(f"k must be a whole number from {low} to {high} (the demo's top-k slider), got {k!r}")
    return k


def max_prompt_tokens(model: KAdapterModel) -> int | None:
    """The most tokens the model reads in one text (its position embeddings, or its tokenizer's limit), if known."""
    limits = [getattr(model.tokenizer, "model_max_length", None),
              getattr(getattr(model.backbone, "config", None), "max_position_embeddings", None)]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 10**7]  # tokenizers say 1e30 for "no limit"
    return min(limits, default=None)


def check_length(model: KAdapterModel, text: str) -> None:
    """Refuse a cloze text longer than the model reads, saying the limit (the model would fail on it)."""
    limit = max_prompt_tokens(model)
    if limit is None:
        return
    mask = getattr(model.tokenizer, "mask_token", None) or MASK
    count = len(model.tokenizer(text.replace(MASK, mask), verbose=False)["input_ids"])
    if count > limit:
        raise ClozeError(f"The sentence is {count} tokens long; this model reads at most {limit} tokens. "
                         "Shorten it.")


def check_cloze(text: str, mask_token: str | None = None) -> tuple[str, str]:
    """The text with its one blank written ``[MASK]``, and a note ("" or what was read differently).

    Raises :class:`ClozeError` for an empty text, a text without a blank, or one with several blanks.
    """
    text = (text or "").strip()
    if not text:
        raise ClozeError(f"Type a sentence with one {MASK} where the answer goes, e.g. “Dante was born in {MASK}.”")
    note = ""
    if mask_token and mask_token != MASK and mask_token in text:  # e.g. RoBERTa's <mask>
        text = text.replace(mask_token, MASK)
    blanks = _ANY_CASE_MASK.findall(text)
    if len(blanks) == 0:
        raise ClozeError(f"No blank in “{text}”: put {MASK} where the answer goes, e.g. “Dante was born in "
                         f"{MASK}.”")
    if len(blanks) > 1:
        raise ClozeError(f"{len(blanks)} blanks in “{text}”: the probes fill exactly one. Keep one {MASK} and "
                         "write the other words out.")
    if blanks[0] != MASK:
        note = f"Read “{blanks[0]}” as {MASK}."
        text = _ANY_CASE_MASK.sub(MASK, text)
    return text, note


def predict(model: KAdapterModel, probes: Mapping[str, MaskedLMProbe], text: str, names: Sequence[str] | None = None,
            k: int = 10, vocabulary: CandidateVocabulary | None = None) -> dict[str, list[tuple[str, float]]]:
    """The demo's one prediction call: ``{model: [(token, probability), ...]}`` for a checked cloze text.
    Raises ``ValueError`` with a message for the user when a model cannot predict for this text, or for a ``k``
    outside 1–30 or a text longer than the model reads."""
    check_k(k)
    check_length(model, text)
    return compare_topk(model, probes, text, names, k, vocabulary)


# --------------------------------------------------------------------------------------------------------- html
_ERROR_STYLE = ("border-left: 5px solid #c62828; background: #fdecea; color: #5f1616; padding: 8px 12px; "
                "margin: 6px 0; border-radius: 3px; font-size: 14px")
_NOTE_STYLE = ("border-left: 5px solid #1565c0; background: #e8f1fb; color: #0d3c61; padding: 6px 12px; "
               "margin: 6px 0; border-radius: 3px; font-size: 13px")


def error_html(message: str) -> str:
    return f'<div class="kadapter-demo-error" style="{_ERROR_STYLE}"><b>⚠ Cannot predict:</b> {html.escape(message)}</div>'


def note_html(message: str) -> str:
    return f'<div class="kadapter-demo-note" style="{_NOTE_STYLE}">{html.escape(message)}</div>'


def busy_html(text: str, count: int) -> str:
    return (f'<div class="kadapter-demo-busy" style="{_NOTE_STYLE}">⏳ Predicting “{html.escape(text)}” with '
            f"{count} model(s) ...</div>")


def result_html(results: Mapping[str, Sequence[tuple[str, float]]], text: str = "",
                descriptions: Mapping[str, str] | None = None) -> str:
    """A static HTML table of a prediction: one column per model, one row per rank, each cell the filler, its
    probability and a bar. Nothing is cut; it reads the same in a saved notebook as live."""
    names = list(results)
    k = max((len(v) for v in results.values()), default=0)
    top = max((p for v in results.values() for _, p in v), default=1.0) or 1.0
    head = "".join(f'<th style="text-align:left;padding:4px 10px">{html.escape(n)}</th>' for n in names)
    rows = []
    for rank in range(k):
        cells = []
        for name in names:
            if rank >= len(results[name]):
                cells.append("<td></td>")
                continue
            token, p = results[name][rank]
            bar = (f'<div style="background:#90caf9;height:6px;width:{max(1, round(100 * p / top))}%;'
                   'margin-top:2px"></div>')
            strong = ("<b>", "</b>") if rank == 0 else ("", "")
            cells.append(f'<td style="text-align:left;padding:3px 10px;min-width:9em">{strong[0]}'
                         f"{html.escape(token)}{strong[1]} <span style='color:#555'>{format_probability(p)}</span>{bar}</td>")
        rows.append(f'<tr><td style="color:#777;padding:3px 6px">{rank + 1}</td>{"".join(cells)}</tr>')
    caption = f"<p style='margin:4px 0'><b>Top {k} fillers</b> of “{html.escape(text)}”</p>" if text else ""
    legend = ""
    if descriptions:
        legend = "<ul style='margin:4px 0 0 0;font-size:12px;color:#444'>" + "".join(
            f"<li>{html.escape(descriptions[n])}</li>" for n in names if n in descriptions) + "</ul>"
    return (f'{caption}<table class="kadapter-demo-table" style="border-collapse:collapse;font-size:13px">'
            f'<thead><tr><th style="padding:4px 6px">#</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table>{legend}")


# -------------------------------------------------------------------------------------------------------- widget
class ProbingDemo:
    """Text box + example prompts + a choice of models (adapter combinations) + k, and a Predict button.

    Submitting (the button, or Enter in the text box) calls :meth:`submit`, which stores ``last_results``
    (``{model: [(token, probability), ...]}``) and ``last_figure`` and shows the figure and the full top-k table;
    bad input shows a message instead and clears both (``last_results == {}``, ``last_figure is None``).
    """

    def __init__(self, model: KAdapterModel, probes: Mapping[str, MaskedLMProbe], *, k: int = 10,
                 examples: Sequence[str] = EXAMPLE_PROMPTS, vocabulary: CandidateVocabulary | None = None,
                 descriptions: Mapping[str, str] | None = None):
        if not probes:
            raise ValueError("the demo needs at least one probe")
        check_k(k)
        self.model, self.probes, self.vocabulary = model, dict(probes), vocabulary
        self.descriptions = dict(descriptions or {})
        self.last_results: dict[str, list[tuple[str, float]]] = {}
        self.last_text = ""
        self.last_figure = None
        self.last_error = ""
        self.busy = False
        self._syncing = False
        examples = list(examples)
        self.text = widgets.Text(value=examples[0] if examples else "", continuous_update=False,
                                 description="Cloze:", placeholder=f"a sentence with one {MASK}",
                                 layout=widgets.Layout(width="95%"))
        self.examples = widgets.Dropdown(options=[CUSTOM, *examples], value=examples[0] if examples else CUSTOM,
                                         description="Examples:", layout=widgets.Layout(width="95%"))
        self.models = widgets.SelectMultiple(options=list(self.probes), value=tuple(self.probes),
                                             description="Models:", rows=min(8, len(self.probes)),
                                             layout=widgets.Layout(width="60%"))
        self.k = widgets.IntSlider(value=k, min=K_RANGE[0], max=K_RANGE[1], description="top k:")
        self.button = widgets.Button(description="Predict", button_style="primary", icon="search",
                                     tooltip="predict the blank with every chosen model")
        self.message = widgets.HTML()
        self.output = widgets.Output()
        self.table = widgets.HTML()
        about = "".join(f"<li>{html.escape(line)}</li>" for line in self.descriptions.values())
        # The style hides the static snapshot (result_html) printed under the live widget; in a saved notebook,
        # where the widget cannot render, the snapshot shows.
        self.about = widgets.HTML(f"<style>.{SNAPSHOT_CLASS} {{display: none;}}</style>"
                                  + (f"<ul style='margin:2px 0;font-size:12px;color:#444'>{about}</ul>"
                                     if about else ""))

        self.button.on_click(self.submit)
        self.text.observe(self._on_text, names="value")  # continuous_update=False: fires on Enter / leaving the box
        self.examples.observe(self._use_example, names="value")
        self.widget = widgets.VBox([self.about, self.examples, self.text, widgets.HBox([self.models, self.k]),
                                    self.button, self.message, self.output, self.table])

    # ---------------------------------------------------------------------------------------------- events
    def _use_example(self, change) -> None:
        if self._syncing or change["new"] == CUSTOM:
            return
        self.text.value = change["new"]  # triggers submit through the text box's observer

    def _on_text(self, change) -> None:
        self._syncing = True
        try:  # the dropdown shows the example being predicted, or "(your own sentence)"
            self.examples.value = change["new"] if change["new"] in self.examples.options else CUSTOM
        finally:
            self._syncing = False
        self.submit()

    # --------------------------------------------------------------------------------------------- predict
    def submit(self, *_) -> dict[str, list[tuple[str, float]]]:
        """Predict for the current text, models and k; show the figure and table. Bad input is reported (a
        styled message that replaces the previous result), not raised."""
        names = list(self.models.value)
        if not names:
            return self._fail("Choose at least one model.")
        try:
            text, note = check_cloze(self.text.value, getattr(self.model.tokenizer, "mask_token", None))
        except ClozeError as err:
            return self._fail(str(err))
        self._set_busy(True, text, len(names))
        try:
            results = predict(self.model, self.probes, text, names, self.k.value, self.vocabulary)
        except ValueError as err:  # e.g. a model that cannot fill this blank, a text over the length limit
            return self._fail(str(err))
        except Exception as err:  # noqa: BLE001 - any other failure is shown too: the widget never stays "busy"
            return self._fail(f"{type(err).__name__}: {err}")
        finally:
            self._set_busy(False)
        self.message.value = note_html(note) if note else ""
        self.last_error = ""
        self.last_results, self.last_text = results, text
        self.last_figure = topk_figure(results, title=text)
        self.table.value = result_html(results, text)
        self._show(self.last_figure)
        return results

    def _fail(self, message: str) -> dict:
        self.last_error = message
        self.message.value = error_html(message)
        self.last_results, self.last_figure, self.last_text = {}, None, ""
        self.table.value = ""
        self._show(None)
        return {}

    def _set_busy(self, busy: bool, text: str = "", count: int = 0) -> None:
        self.busy = busy
        self.button.disabled = busy
        self.button.description = "Predicting ..." if busy else "Predict"
        self.button.icon = "hourglass-half" if busy else "search"
        if busy:
            self.message.value = busy_html(text, count)

    def snapshot_html(self) -> str:
        """The last result as static HTML (hidden under the live widget, shown in a saved notebook)."""
        body = (result_html(self.last_results, self.last_text, self.descriptions) if self.last_results
                else error_html(self.last_error or "no prediction yet"))
        return (f'<div class="{SNAPSHOT_CLASS}"><p style="margin:2px 0;color:#555"><i>Static copy of the demo\'s '
                f"last result (the widget above needs a live kernel):</i></p>{body}</div>")

    def _show(self, figure) -> None:
        from IPython import get_ipython

        if get_ipython() is None:  # headless (tests, scripts): keep the figure, print nothing
            return
        from IPython.display import clear_output, display

        with self.output:
            clear_output(wait=figure is not None)
            if figure is not None:
                display(figure)

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(self.widget)
        display(HTML(self.snapshot_html()))
