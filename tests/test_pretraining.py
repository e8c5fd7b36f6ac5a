"""Adapter pre-training end to end on real data (FewRel relations, UD EWT heads) and the real MiniLM: adapter
directories and results are written, cached training equals live training, several adapters from one backbone
pass train as if alone with isolated gradients, bad configurations fail clearly, the notebook runs."""
import json
from pathlib import Path

import pytest
import torch
from datasets import DatasetDict
from safetensors.torch import load_file

from kadapter import AdapterConfig, KAdapterModel, KnowledgeAdapter
from kadapter.pretraining import (BASELINE, FactualTask, PretrainConfig, build_task_models, dev_table,
                                  pretrain_adapters, random_twin_name)
from kadapter.training import trainable_state
from notebook_fixtures import NOTEBOOK_CELL_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)


def tiny(dropout=0.1, **kw):
    return AdapterConfig(**TINY, dropout=dropout, attention_dropout=dropout, **kw)


@pytest.fixture(scope="module")
def encoder(minilm_path):
    return KAdapterModel.from_backbone(minilm_path)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="module")
def factual_data():
    """FewRel sentences of 4 relations: 48 train, 24 dev (real aligned text-triples)."""
    from data_prep.eval_sets import load_fewrel

    dataset, _ = load_fewrel()
    dataset = dataset.filter(lambda r: r["relation"] in ("P26", "P40", "P25", "P361")).shuffle(seed=0)
    return DatasetDict({"train": dataset.select(range(48)), "dev": dataset.select(range(48, 72))})


@pytest.fixture(scope="module")
def linguistic_data():
    from data_prep.dependency import load_ud_ewt

    return DatasetDict({"train": load_ud_ewt("train")[0].select(range(48)),
                        "dev": load_ud_ewt("dev")[0].select(range(24))})


def config(tmp_path, cache_root, **overrides):
    return PretrainConfig(**{"output_dir": str(tmp_path), "max_length": 32, "epochs": 2, "batch_size": 16,
                             "learning_rate": 1e-3, "cache_root": str(cache_root), "progress": False,
                             "device": "cpu", **overrides})


@pytest.mark.parametrize("kind", ["factual", "linguistic"])
def test_pretraining_writes_adapter_head_and_results(kind, encoder, cache_root, tmp_path, factual_data,
                                                     linguistic_data):
    data = factual_data if kind == "factual" else linguistic_data
    results = pretrain_adapters(kind, data, {kind: tiny(), BASELINE: None}, config(tmp_path, cache_root),
                                encoder=encoder)
    metric = "micro_f1" if kind == "factual" else "uas"
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metric"] == metric and set(saved["models"]) == {kind, BASELINE}
    for name, entry in saved["models"].items():
        assert 0.0 <= entry["dev"][metric] <= 1.0 and len(entry["history"]) == 2
        assert (tmp_path / "task_models" / f"{name}.safetensors").is_file()
    rows = {r["model"]: r for r in dev_table(results)}
    assert rows[BASELINE]["trainable_parameters"] < rows[kind]["trainable_parameters"]
    assert saved["cache"]["train"]["bytes"] > 0 and saved["data"]["encoding"]["train"]["examples"] == 48
    assert not list((tmp_path / "train").glob("*.pt")), "checkpoints are removed unless kept"

    # The adapter directory is self-describing and loads strictly onto the same backbone.
    adapter_dir = tmp_path / "adapters" / kind
    adapter = KnowledgeAdapter.from_pretrained(adapter_dir, backbone=encoder.identity)
    meta = json.loads((adapter_dir / "adapter_config.json").read_text())["metadata"]
    assert meta["task"] == kind and meta["dev_metrics"][metric] == saved["models"][kind]["dev"][metric]
    assert adapter.tap_layers == (0, 2, 4)
    assert not (tmp_path / "adapters" / BASELINE).exists()
    # training moved the adapter away from its fresh initialisation
    torch.manual_seed(0)
    fresh = KnowledgeAdapter(tiny(), encoder.identity)
    moved = adapter.adapter_layers[0].up_project.weight - fresh.adapter_layers[0].up_project.weight
    assert moved.abs().max() > 1e-3


def test_reported_dev_metrics_match_a_recomputation(encoder, cache_root, tmp_path, factual_data):
    """Rebuild the trained model from its saved weights, predict dev live, score with kadapter.metrics."""
    from safetensors.torch import load_file

    from kadapter.encoding import PadCollator
    from kadapter.metrics import classification_metrics
    from kadapter.training import load_trainable_state

    cfg = config(tmp_path, cache_root, storage_dtype="float32")
    results = pretrain_adapters("factual", factual_data, {"factual": tiny()}, cfg, encoder=encoder)
    task = FactualTask.from_data(factual_data)
    model = build_task_models(encoder, task, {"factual": tiny()}, 0.1, seed=123)["factual"].eval()
    load_trainable_state(model, load_file(str(tmp_path / "task_models" / "factual.safetensors")))
    encoded, _ = task.encode(factual_data["dev"], encoder.tokenizer, 32)
    batch = PadCollator(encoder.tokenizer.pad_token_id)([encoded[i] for i in range(len(encoded))])
    with torch.no_grad():
        pred = model(**batch).logits.argmax(-1)
    expected = classification_metrics(batch["labels"].tolist(), pred.tolist(), labels=range(len(task.labels)))
    dev = results["models"]["factual"]["dev"]
    for name in ("accuracy", "micro_f1", "macro_f1"):
        assert dev[name] == pytest.approx(expected[name]), name


def test_cached_training_equals_a_backbone_pass_per_step(encoder, cache_root, tmp_path, factual_data):
    adapters = {"factual": tiny(dropout=0.0)}
    kw = dict(head_dropout=0.0, storage_dtype="float32", epochs=1)
    cached = pretrain_adapters("factual", factual_data, adapters, config(tmp_path / "c", cache_root, **kw),
                               encoder=encoder)
    live = pretrain_adapters("factual", factual_data, adapters,
                             config(tmp_path / "l", cache_root, use_cache=False, **kw), encoder=encoder)
    assert cached["cache"]["train"] is not None and live["cache"]["train"] is None
    a = KnowledgeAdapter.from_pretrained(tmp_path / "c" / "adapters" / "factual").state_dict()
    b = KnowledgeAdapter.from_pretrained(tmp_path / "l" / "adapters" / "factual").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=5e-5, msg=k)
    assert cached["models"]["factual"]["dev"]["loss"] == pytest.approx(live["models"]["factual"]["dev"]["loss"],
                                                                       abs=1e-4)


@pytest.mark.parametrize("use_cache", [True, False])
def test_several_adapters_from_one_pass_train_as_if_alone(use_cache, encoder, cache_root, tmp_path,
                                                          linguistic_data):
    """One job, one backbone pass per batch (or one for the whole run with the cache), separate optimizers:
    each adapter ends where it ends when trained alone. Dropout off, so no random stream is shared."""
    adapters = {"small": tiny(dropout=0.0), "other_taps": tiny(dropout=0.0, tap_layers=(1, 3))}
    kw = dict(head_dropout=0.0, storage_dtype="float32", use_cache=use_cache, epochs=1)
    together = pretrain_adapters("linguistic", linguistic_data, adapters, config(tmp_path / "both", cache_root, **kw),
                                 encoder=encoder)
    assert together["steps"] == 3
    for name, cfg in adapters.items():
        pretrain_adapters("linguistic", linguistic_data, {name: cfg}, config(tmp_path / name, cache_root, **kw),
                          encoder=encoder)
        a = KnowledgeAdapter.from_pretrained(tmp_path / "both" / "adapters" / name).state_dict()
        b = KnowledgeAdapter.from_pretrained(tmp_path / name / "adapters" / name).state_dict()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=2e-5, msg=f"{name}.{k}")


def test_gradients_stay_isolated_between_adapters(encoder, factual_data):
    task = FactualTask.from_data(factual_data)
    models = build_task_models(encoder, task, {"a": tiny(), "b": tiny(), BASELINE: None}, 0.1, seed=1)
    encoded, _ = task.encode(factual_data["train"].select(range(4)), encoder.tokenizer, 32)
    from kadapter.encoding import PadCollator

    batch = PadCollator(encoder.tokenizer.pad_token_id)([encoded[i] for i in range(4)])
    models["a"](**batch).loss.backward()
    assert all(p.grad is not None for p in models["a"].parameters() if p.requires_grad)
    for name in ("b", BASELINE):
        assert all(p.grad is None for p in models[name].parameters()), f"gradient leaked into {name}"
    assert all(p.grad is None for p in encoder.backbone.parameters())
    # different names, different initialisation; same name, same one whatever trains alongside
    a, b = trainable_state(models["a"]), trainable_state(models["b"])
    key = "encoder.adapters.a.adapter_layers.0.layers.0.query.weight"
    assert not torch.equal(a[key], b[key.replace(".a.", ".b.")])
    again = build_task_models(encoder, task, {"a": tiny()}, 0.1, seed=1)
    torch.testing.assert_close(trainable_state(again["a"])[key], a[key], rtol=0, atol=0)


def test_random_twin_starts_from_the_adapters_draw_and_stays_frozen(encoder, cache_root, tmp_path, factual_data):
    """The pre-training "w/o knowledge" control: same architecture and initial weights as the adapter, never
    updated, while its fusion and head train on the same batches."""
    task = FactualTask.from_data(factual_data)
    twin = random_twin_name("f")
    start = build_task_models(encoder, task, {"f": tiny()}, 0.1, seed=42, twins={twin: "f"})
    with pytest.raises(ValueError, match="random twin 'x' copies 'g', which is not an adapter being trained"):
        build_task_models(encoder, task, {"f": tiny()}, 0.1, seed=42, twins={"x": "g"})
    a, b = start["f"].state_dict(), start[twin].state_dict()
    for key, value in a.items():
        torch.testing.assert_close(b[key.replace(".f.", f".{twin}.")], value, rtol=0, atol=0, msg=key)
    start[twin].train()
    assert not start[twin].encoder.adapters[twin].training  # frozen: no dropout, like the backbone
    assert start["f"].encoder.adapters["f"].training

    results = pretrain_adapters("factual", factual_data, {"f": tiny(), BASELINE: None},
                                config(tmp_path, cache_root, epochs=2), encoder=encoder, random_twins=["f"])
    models = results["models"]
    assert set(models) == {"f", BASELINE, twin} and models[twin]["knowledge"] == "none (random, frozen)"
    assert [row["model"] for row in dev_table(results)] == ["f", BASELINE, twin, "majority"]
    assert models[twin]["seed"] == models["f"]["seed"]
    # trainable: fusion + head only, i.e. the adapter's model minus the adapter's own parameters
    adapter_params = sum(p.numel() for p in start["f"].encoder.adapters["f"].parameters())
    assert models[twin]["trainable_parameters"] == models["f"]["trainable_parameters"] - adapter_params
    assert not (tmp_path / "adapters" / twin).exists()  # a random draw is not a knowledge adapter
    # every adapter's results record its optimizer steps and its distance from the init draw (issue 17)
    steps_per_epoch = -(-results["data"]["train"] // 16)
    kept = models["f"]["diagnostics"]
    assert kept["optimizer_steps"] == steps_per_epoch * (models["f"]["best_epoch"] + 1) and kept["init_seed"] == \
        models["f"]["seed"]
    assert 0 < kept["relative_distance_from_init"] and 0 < kept["learned_share"] < 10
    assert models[twin]["diagnostics"]["optimizer_steps"] == 0
    assert models[twin]["diagnostics"]["relative_distance_from_init"] == 0.0  # it is exactly its init draw
    assert models[twin]["diagnostics"]["learned_share"] < kept["learned_share"]
    meta = json.loads((tmp_path / "adapters" / "f" / "adapter_config.json").read_text())["metadata"]
    assert meta["optimizer_steps"] == kept["optimizer_steps"] and meta["init_seed"] == models["f"]["seed"]
    row = {r["model"]: r for r in dev_table(results)}["f"]
    assert row["optimizer steps"] == kept["optimizer_steps"]
    trained = load_file(str(tmp_path / "task_models" / f"{twin}.safetensors"))
    assert not any(k.startswith(f"encoder.adapters.{twin}.") for k in trained)  # stayed at its draw, not saved
    head_keys = [k for k in trained if k.startswith("head.")]
    assert head_keys and any(not torch.equal(trained[k], b[k]) for k in head_keys)  # the head did train
    with pytest.raises(ValueError, match="random_twins names 'g', which is not one of the adapters being trained"):
        pretrain_adapters("factual", factual_data, {"f": tiny()}, config(tmp_path, cache_root), encoder=encoder,
                          random_twins=["g"])


def test_majority_baselines_by_hand(encoder, factual_data, linguistic_data):
    """The trivial rows of the pre-training table: the majority relation, and the most frequent head offset."""
    from collections import Counter

    from kadapter.pretraining import LinguisticTask

    task = FactualTask.from_data(factual_data)
    train, _ = task.encode(factual_data["train"], encoder.tokenizer, 32)
    dev, _ = task.encode(factual_data["dev"], encoder.tokenizer, 32)
    top = Counter(factual_data["train"]["relation"]).most_common(1)[0][0]
    share = sum(r == top for r in factual_data["dev"]["relation"]) / len(factual_data["dev"])
    got = task.majority_baseline(train, dev)
    assert got["prediction"] == top and got["accuracy"] == pytest.approx(share) and 0 < share < 1

    task = LinguisticTask()
    train, _ = task.encode(linguistic_data["train"], encoder.tokenizer, 32)
    dev, _ = task.encode(linguistic_data["dev"], encoder.tokenizer, 32)
    offsets = Counter(h - i for ls in train["labels"] for i, h in enumerate(ls) if h != -100)
    offset = offsets.most_common(1)[0][0]
    hits = [h == (i + offset if 0 <= i + offset < len(ls) else 0)
            for ls in dev["labels"] for i, h in enumerate(ls) if h != -100]
    got = task.majority_baseline(train, dev)
    assert got["prediction"] == f"head offset {offset:+d}" and got["words"] == len(hits)
    assert got["uas"] == pytest.approx(sum(hits) / len(hits)) and 0 < got["uas"] < 0.5


def test_bad_configurations_fail_clearly(encoder, cache_root, tmp_path, factual_data):
    with pytest.raises(ValueError, match=r"tap layer\(s\) \[9\] out of range: the backbone has 6 blocks"):
        pretrain_adapters("factual", factual_data, {"deep": tiny(tap_layers=(0, 9))},
                          config(tmp_path, cache_root), encoder=encoder)
    empty = DatasetDict({"train": factual_data["train"].select([]), "dev": factual_data["dev"]})
    with pytest.raises(ValueError, match="train split is empty"):
        pretrain_adapters("factual", empty, {"f": tiny()}, config(tmp_path, cache_root), encoder=encoder)
    with pytest.raises(ValueError, match="unknown adapter kind 'semantic'"):
        pretrain_adapters("semantic", factual_data, {"f": tiny()}, config(tmp_path, cache_root), encoder=encoder)
    with pytest.raises(ValueError, match="relation 'P\\d+' is not among the head's 2 labels"):
        FactualTask(["P1", "P2"]).encode(factual_data["train"], encoder.tokenizer, 32)
    with pytest.raises(ValueError, match="at least one adapter"):
        pretrain_adapters("factual", factual_data, {}, config(tmp_path, cache_root), encoder=encoder)


@pytest.mark.notebook
def test_notebook_smoke_run(tmp_path):
    from kadapter.notebook_run import execute_notebook

    out = tmp_path / "run"
    execute_notebook(
        str(ROOT / "notebooks" / "02_adapter_pretraining.ipynb"), str(tmp_path / "executed.ipynb"),
        cwd=str(ROOT / "notebooks"), execution_timeout=NOTEBOOK_CELL_TIMEOUT,
        parameters=dict(adapter_kinds=["linguistic"], train_examples=64, dev_examples=32, max_length=32,
                        adapter_hidden_size=32, adapter_heads=2, adapter_intermediate_size=64,
                        adapter_transformer_layers=1, epochs=1, batch_size=16, cache_dir=str(tmp_path / "cache"),
                        device="cpu", output_dir=str(out)))
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["linguistic"]["dev"]) == {"linguistic", BASELINE, random_twin_name("linguistic"), "majority"}
    assert summary["linguistic"]["dev"][random_twin_name("linguistic")]["knowledge"] == "none (random, frozen)"
    assert (out / "linguistic" / "adapters" / "linguistic" / "adapter.safetensors").is_file()
    assert (out / "loss.html").is_file() and (out / "dev_metric.html").is_file()
