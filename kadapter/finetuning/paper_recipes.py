"""The paper's fine-tuning recipe per task (``--profile paper``), with where each number comes from.

Paper: Wang et al., K-Adapter, App. C (ICLR text; ``../shared/PAPER.md`` §3): the best setting of each task's grid.
Where the paper is silent, the official launcher's value (microsoft/K-Adapter HEAD 43651cd, ``run_finetune_*.sh``
and the argparse defaults of ``examples/run_finetune_*_adapter.py``), and the ``sources`` entry says so. The kit's
relation task is SemEval-2010 Task 8, trained with the paper's TACRED recipe (TACRED itself is LDC-licensed).

The recipe sets the backbone-trained rows, which are the paper's (backbone, +F, +L, +F+L with RoBERTa fine-tuned and
the adapters frozen). The kit's frozen-backbone rows share the batch size and length but keep their own
learning-rate grid: the paper has no such rows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .settings import FineTuneConfig

PAPER, OFFICIAL = "paper App. C", "official launcher"


@dataclass(frozen=True)
class PaperRecipe:
    task: str  # the kit's task name
    paper_task: str  # the data set the paper trained it on
    batch_size: int
    epochs: int
    max_length: int
    # per adapter combination: "" (backbone alone), "F", "L", "F+L"
    learning_rate: dict = field(default_factory=dict)
    warmup_steps: dict = field(default_factory=dict)
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0  # 0: no clipping
    weight_decay: float = 0.0
    sources: dict = field(default_factory=dict)  # field -> where the value comes from

    def finetune_config(self, **kit_fields) -> FineTuneConfig:
        """A :class:`FineTuneConfig` with this recipe: learning rate and warm-up steps per combination for the
        backbone-trained rows (the frozen rows keep the kit's warm-up ratio and rates); batch, length, epochs of the
        trained rows, optimizer eps, clipping and weight decay for every row. `kit_fields` set the rest (and may
        override the recipe, e.g. fewer epochs in a rehearsal). Inputs and precision as the official code:
        ``input_format="official"``, float32, frozen adapters' dropout active, no early stopping."""
        recipe = dict(
            batch_size=self.batch_size, trained_epochs=self.epochs, max_length=self.max_length,
            backbone_learning_rate=self.learning_rate[""],
            trained_backbone_overrides={combo: {"learning_rate": self.learning_rate[combo],
                                                "warmup_steps": self.warmup_steps[combo]}
                                        for combo in self.learning_rate},
            adam_epsilon=self.adam_epsilon, max_grad_norm=self.max_grad_norm, weight_decay=self.weight_decay,
            input_format="official", mixed_precision="no", frozen_adapter_dropout=True, patience=None)
        return FineTuneConfig(**{**recipe, **kit_fields})

    def to_dict(self) -> dict:
        return asdict(self)


_NO_BACKBONE_ROW = "the paper gives no setting for its RoBERTa row: the +F row's"
_OFFICIAL_DEFAULTS = f"{OFFICIAL} (argparse defaults: eps 1e-8, clipping 1.0, weight decay 0)"

PAPER_RECIPES: dict[str, PaperRecipe] = {
    "openentity": PaperRecipe(
        "openentity", "OpenEntity", batch_size=4, epochs=24, max_length=256,
        learning_rate={"": 5e-6, "F": 5e-6, "L": 5e-6, "F+L": 5e-6},
        warmup_steps={"": 500, "F": 500, "L": 1000, "F+L": 1000},
        sources={"batch_size": PAPER, "learning_rate": PAPER, "warmup_steps": PAPER, "max_length": PAPER,
                 "backbone row": _NO_BACKBONE_ROW,
                 "epochs": f"{OFFICIAL}: --max_steps 12000 at batch 4 = 24 epochs of 1,998 (the paper gives none)",
                 "adam_epsilon, max_grad_norm, weight_decay": _OFFICIAL_DEFAULTS}),
    "semeval": PaperRecipe(
        "semeval", "TACRED", batch_size=32, epochs=5, max_length=184,
        learning_rate={"": 1e-5, "F": 1e-5, "L": 1e-5, "F+L": 5e-6},
        warmup_steps={"": 500, "F": 500, "L": 200, "F+L": 1000},
        sources={"batch_size": PAPER, "learning_rate": PAPER, "warmup_steps": PAPER, "epochs": PAPER,
                 "max_length": PAPER, "backbone row": _NO_BACKBONE_ROW,
                 "adam_epsilon, max_grad_norm, weight_decay": _OFFICIAL_DEFAULTS,
                 "note": "TACRED's recipe on SemEval (7,200 train examples: 225 steps per epoch, so a 1,000-step "
                         "warm-up spans most of the 1,125 steps)"}),
    "cosmosqa": PaperRecipe(
        "cosmosqa", "CosmosQA", batch_size=64, epochs=3, max_length=256,
        learning_rate={"": 1e-5, "F": 1e-5, "L": 1e-5, "F+L": 1e-5},
        warmup_steps={"": 0, "F": 0, "L": 0, "F+L": 0},
        adam_epsilon=1e-6, max_grad_norm=0.0, weight_decay=0.0,
        sources={"batch_size": PAPER, "learning_rate": PAPER, "warmup_steps": PAPER, "epochs": PAPER,
                 "max_length": PAPER, "backbone row": "one setting for every row (paper)",
                 "adam_epsilon": f"{OFFICIAL}: --adam_epsilon 1e-6", "weight_decay": f"{OFFICIAL}: --weight_decay 0",
                 "max_grad_norm": f"{OFFICIAL}: run_finetune_cosmosqa_adapter.py never clips gradients"}),
}


def paper_finetune_config(task: str, **kit_fields) -> FineTuneConfig:
    """The paper's recipe for `task` as a :class:`FineTuneConfig` (see :class:`PaperRecipe.finetune_config`)."""
    if task not in PAPER_RECIPES:
        raise ValueError(f"the paper has no recipe for {task!r}; it has one for {sorted(PAPER_RECIPES)}")
    return PAPER_RECIPES[task].finetune_config(**kit_fields)
