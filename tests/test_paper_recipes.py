"""``--profile paper`` fine-tunes each task with the paper's recipe (App. C; ../shared/PAPER.md §3), the official
launcher's value where the paper is silent: pinned here per task, and followed by the trainer (optimizer eps,
warm-up in steps, clipping) and the model (frozen adapters' dropout)."""
import pytest
import torch

from kadapter import finetuning as ft
from kadapter.pipeline import PROFILES

BACKBONE, F, L, FL = "", "F", "L", "F+L"


def trained(letters: str) -> ft.Setting:
    adapters = {ft.ADAPTER_LETTERS[x]: f"/adapters/{x}" for x in letters.split("+") if x}
    return ft.Setting(ft.setting_name(list(adapters and letters.split("+")), backbone_trainable=True), adapters,
                      backbone_trainable=True)


def rows(config: ft.FineTuneConfig) -> dict:
    return {combo: (config.learning_rate_for(trained(combo)), config.warmup_steps_for(trained(combo)))
            for combo in (BACKBONE, F, L, FL)}


def test_openentity_is_the_papers():
    # paper: max_len 256; best F bs 4 lr 5e-6 wu 500; L bs 4 lr 5e-6 wu 1000; F+L bs 4 lr 5e-6 wu 1000
    c = ft.paper_finetune_config("openentity")
    assert (c.batch_size, c.max_length) == (4, 256)
    assert rows(c) == {BACKBONE: (5e-6, 500), F: (5e-6, 500), L: (5e-6, 1000), FL: (5e-6, 1000)}
    # silent in the paper: --max_steps 12000 at batch 4 over 1,998 examples; argparse defaults
    assert c.trained_epochs == 24 and (c.adam_epsilon, c.max_grad_norm, c.weight_decay) == (1e-8, 1.0, 0.0)


def test_semeval_takes_the_papers_tacred_recipe():
    # paper TACRED: 5 epochs, max_len 184, bs 32; F lr 1e-5 wu 500; L lr 1e-5 wu 200; F+L lr 5e-6 wu 1000
    c = ft.paper_finetune_config("semeval")
    assert (c.batch_size, c.max_length, c.trained_epochs) == (32, 184, 5)
    assert rows(c) == {BACKBONE: (1e-5, 500), F: (1e-5, 500), L: (1e-5, 200), FL: (5e-6, 1000)}
    assert (c.adam_epsilon, c.max_grad_norm, c.weight_decay) == (1e-8, 1.0, 0.0)


def test_cosmosqa_is_the_papers():
    # paper: 3 epochs, max_len 256, bs 64, lr 1e-5, no warm-up; official: adam eps 1e-6, weight decay 0, no clipping
    c = ft.paper_finetune_config("cosmosqa")
    assert (c.batch_size, c.max_length, c.trained_epochs) == (64, 256, 3)
    assert rows(c) == {combo: (1e-5, 0) for combo in (BACKBONE, F, L, FL)}
    assert (c.adam_epsilon, c.max_grad_norm, c.weight_decay) == (1e-6, 0.0, 0.0)


def test_recipe_behaviours_and_sources():
    for task, recipe in ft.PAPER_RECIPES.items():
        c = recipe.finetune_config()
        # the official code's inputs, float32, frozen adapters' dropout on, no early stopping
        assert (c.input_format, c.mixed_precision, c.frozen_adapter_dropout, c.patience) == (
            "official", "no", True, None), task
        assert set(recipe.learning_rate) == set(recipe.warmup_steps) == {BACKBONE, F, L, FL}
        assert "backbone row" in recipe.sources and "batch_size" in recipe.sources
    # frozen rows keep the kit's rates and warm-up ratio; kit fields and overrides pass through
    c = ft.paper_finetune_config("semeval", learning_rates=(1e-2,), trained_epochs=1)
    frozen = ft.Setting("+F", {"factual": "/adapters/F"})
    assert c.learning_rates_for(frozen) == [1e-2] and c.warmup_steps_for(frozen) is None
    assert c.trained_epochs == 1
    with pytest.raises(ValueError, match="no recipe for 'fewrel'"):
        ft.paper_finetune_config("fewrel")


def test_the_paper_profile_runs_the_papers_rows_with_the_recipe():
    fine = PROFILES["paper"]["03_finetuning"]
    assert fine["paper_recipe"] is True
    assert fine["trained_backbone_combinations"] == ["", "F", "L", "F+L"]  # backbone, +F, +L, +F+L
    assert set(fine["tasks"]) <= set(ft.PAPER_RECIPES)
    for stale in ("trained_epochs", "max_length", "backbone_learning_rate"):  # the recipe's, per task
        assert stale not in fine


def test_trainer_follows_eps_warmup_steps_and_no_clipping(tmp_path):
    from kadapter.training import TrainConfig, Trainer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    data = [{"x": torch.randn(4), "labels": torch.tensor(i % 2)} for i in range(8)]

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, labels):
            return {"loss": torch.nn.functional.cross_entropy(self.net(x) * 1e3, labels)}

    config = TrainConfig(output_dir=str(tmp_path), epochs=2, batch_size=2, learning_rate=1e-2, warmup_steps=3,
                         adam_epsilon=1e-6, max_grad_norm=0.0, cpu=True, progress=False, weight_decay=0.0)
    trainer = Trainer({"m": Wrapped()}, data, config, collate_fn=torch.utils.data.default_collate)
    optimizer = trainer.optimizers["m"]
    assert all(g["eps"] == 1e-6 for g in optimizer.param_groups)
    scheduler = trainer.schedulers["m"]
    factors = [scheduler.lr_lambdas[0](step) for step in range(8)]
    assert factors[:3] == pytest.approx([1 / 4, 2 / 4, 3 / 4]) and factors[3] == pytest.approx(1.0)  # 3 steps up
    assert factors[7] == pytest.approx(1 / 5)  # then linear decay to 0 at step 8


def test_frozen_adapters_keep_dropout_only_when_asked():
    from kadapter import AdapterConfig, KAdapterModel, random_backbone

    backbone = random_backbone("bert", vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=32)
    model = KAdapterModel(backbone, {"factual": AdapterConfig(hidden_size=16, num_attention_heads=2,
                                                              intermediate_size=32, num_transformer_layers=1)})
    model.adapters["factual"].requires_grad_(False)
    assert not model.train().adapters["factual"].training  # the kit: a frozen adapter is a fixed extractor
    model.frozen_adapter_dropout = True
    assert model.train().adapters["factual"].training  # the official code: dropout stays active
    assert not model.eval().adapters["factual"].training


def test_paper_numbers_sit_on_the_rows_trained_as_the_paper():
    for task in ("openentity", "tacred", "cosmosqa"):
        ref = ft.paper_reference(task)
        assert set(ref["values"]) == {f"{c} | backbone trained" for c in ("backbone", "+F", "+L", "+F+L")}, task
        # the paper's rows are the ones the paper profile trains
        names = {ft.setting_name(c.split("+") if c else [], backbone_trainable=True)
                 for c in PROFILES["paper"]["03_finetuning"]["trained_backbone_combinations"]}
        assert set(ref["values"]) == names
    assert "leaderboard test" in ft.paper_reference("cosmosqa")["split"]
    odd = ft.paper_reference("openentity")["unplaced"]["K-Adapter (w/o knowledge)"]
    p, r = odd["precision"], odd["recall"]
    assert odd["value"] == 76.17 and f"{2 * p * r / (p + r):.2f}" == "74.69" and "74.69" in odd["note"]
    assert ft.paper_reference("semeval") is None  # the paper has no SemEval numbers
