"""The probing demo: type a cloze sentence, pick adapter combinations, see each one's top-k fillers side by side.

A thin widget shell. Every prediction goes through :func:`kadapter.probing.compare_topk` (each probe's ``topk``:
:func:`~kadapter.probing.predict_topk` for a masked-LM probe, the next token after the prefix for a causal LM's) and every figure through :func:`kadapter.plotting.topk_figure`, the
same calls the papermill path of ``notebooks/05_probing_demo.ipynb`` makes, so tests can drive the handler headless
and compare.
"""
from __future__ import annotations

import html
from typing import Mapping, Sequence

import ipywidgets as widgets

from .model import KAdapterModel
from .plotting import topk_figure
from .probing import CandidateVocabulary, MaskedLMProbe, compare_topk

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


class ProbingDemo:
    """Text box + example prompts + a choice of models (adapter combinations) + k, and a Predict button.

    Submitting (the button, or Enter in the text box) calls :meth:`submit`, which stores ``last_results``
    (``{model: [(token, probability), ...]}``) and ``last_figure`` and shows the figure when running in a kernel.
    """

    def __init__(self, model: KAdapterModel, probes: Mapping[str, MaskedLMProbe], *, k: int = 10,
                 examples: Sequence[str] = EXAMPLE_PROMPTS, vocabulary: CandidateVocabulary | None = None):
        if not probes:
            raise ValueError("the demo needs at least one probe")
        self.model, self.probes, self.vocabulary = model, dict(probes), vocabulary
        self.last_results: dict[str, list[tuple[str, float]]] = {}
        self.last_figure = None
        self.text = widgets.Text(value=examples[0] if examples else "", continuous_update=False,
                                 description="Cloze:", placeholder="a sentence with one [MASK]",
                                 layout=widgets.Layout(width="70%"))
        self.examples = widgets.Dropdown(options=list(examples), value=examples[0] if examples else None,
                                         description="Examples:", layout=widgets.Layout(width="70%"))
        self.models = widgets.SelectMultiple(options=list(self.probes), value=tuple(self.probes),
                                             description="Models:", rows=min(6, len(self.probes)))
        self.k = widgets.IntSlider(value=k, min=1, max=30, description="top k:")
        self.button = widgets.Button(description="Predict", button_style="primary")
        self.message = widgets.HTML()
        self.output = widgets.Output()

        self.button.on_click(self.submit)
        self.text.observe(self.submit, names="value")  # continuous_update=False: fires on Enter / leaving the box
        self.examples.observe(self._use_example, names="value")
        self.widget = widgets.VBox([self.examples, self.text, widgets.HBox([self.models, self.k]), self.button,
                                    self.message, self.output])

    def _use_example(self, change) -> None:
        self.text.value = change["new"]  # triggers submit through the text box's observer

    def submit(self, *_) -> dict[str, list[tuple[str, float]]]:
        """Predict for the current text, models and k; show the figure. Bad input is reported, not raised."""
        names = list(self.models.value)
        if not names:
            self.message.value = "<b>Choose at least one model.</b>"
            return {}
        try:
            results = compare_topk(self.model, self.probes, self.text.value, names, self.k.value, self.vocabulary)
        except ValueError as err:
            self.message.value = f"<b>{html.escape(str(err))}</b>"
            return {}
        self.message.value = ""
        self.last_results = results
        self.last_figure = topk_figure(results, title=self.text.value)
        self._show(self.last_figure)
        return results

    def _show(self, figure) -> None:
        from IPython import get_ipython

        if get_ipython() is None:  # headless (tests, scripts): keep the figure, print nothing
            return
        from IPython.display import clear_output, display

        with self.output:
            clear_output(wait=True)
            display(figure)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
