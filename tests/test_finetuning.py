"""Fine-tuning runner on the real MiniLM and real data (small slices): settings train what they say, the pooled
shortcut equals the full model, model selection uses dev only and test is evaluated once, truncation is reported,
the TACRED-format sample runs end to end, and the notebook runs under papermill."""
import json
from pathlib import Path

import pytest
import torch

from kadapter import AdapterConfig, KnowledgeAdapter, KAdapterModel, load_backbone
from kadapter import finetuning as ft
from kadapter.plotting import results_bar_chart
from notebook_fixtures import NOTEBOOK_CELL_TIMEOUT

# Distinct, clearly non-identity adapters (init_range 0.05): swapping two of them would change every output.
TINY = AdapterConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1,
                     init_range=0.05)
SMALL = {"train": 12, "dev": 6, "test": 6}


@pytest.fixture(scope="module")
def minilm(minilm_path):
    torch.set_num_threads(2)
    return load_backbone(minilm_path)


@pytest.fixture(scope="module")
def adapter_dirs(minilm, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"F": str(ft.save_untrained_adapter(root / "factual", minilm[0], TINY, seed=11)),
            "L": str(ft.save_untrained_adapter(root / "linguistic", minilm[0], TINY, seed=12))}


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("feature_cache"))


def config(cache_root, **overrides):
    return ft.FineTuneConfig(**{"epochs": 2, "max_length": 64, "progress": False, "cache_root": cache_root,
                                "batch_size": 4, **overrides})


# ---------------------------------------------------------------------------------------------------- settings
def test_standard_settings_names_and_modes(adapter_dirs):
    settings = ft.standard_settings(adapter_dirs)
    assert [s.name for s in settings] == ["majority", "backbone", "+F", "+L", "+F+L", "+F (w/o knowledge, frozen)",
                                          "+F+L (w/o knowledge, frozen)", "+F (w/o knowledge, trained)"]
    modes = {s.name: s.mode for s in settings}
    assert modes["majority"] == "baseline" and modes["+F (w/o knowledge, trained)"] == "taps"
    assert all(modes[n] == "pooled" for n in ("backbone", "+F", "+L", "+F+L", "+F (w/o knowledge, frozen)",
                                              "+F+L (w/o knowledge, frozen)"))
    by_name = {s.name: s for s in settings}
    assert by_name["+F+L"].adapters == {"factual": adapter_dirs["F"], "linguistic": adapter_dirs["L"]}
    assert by_name["+F (w/o knowledge, frozen)"].adapters == by_name["+F"].adapters  # same architecture source
    assert by_name["+F+L (w/o knowledge, frozen)"].adapters == by_name["+F+L"].adapters
    trained = ft.standard_settings(adapter_dirs, backbone_trainable=True, fusion="add", majority=False,
                                   controls=(), trained_controls=())
    assert [s.name for s in trained] == ["backbone | backbone trained", "+F | add fusion | backbone trained",
                                         "+L | add fusion | backbone trained", "+F+L | add fusion | backbone trained"]
    assert {s.mode for s in trained} == {"tokens"}
    knowledge_trained = ft.standard_settings(adapter_dirs, combinations=(), controls=(), trained_combinations=("F",))
    assert [(s.name, s.knowledge, s.adapters_trainable) for s in knowledge_trained[2:]] == [
        ("+F (adapters trained)", True, True), ("+F (w/o knowledge, trained)", False, True)]
    with pytest.raises(ValueError, match="no adapter directory"):
        ft.standard_settings({"F": adapter_dirs["F"]})
    with pytest.raises(ValueError, match="fusion mode"):
        ft.Setting("x", fusion="mean")
    assert ft.Setting.from_dict(by_name["+F+L"].to_dict()) == by_name["+F+L"]


def test_without_knowledge_adapter_same_architecture_fresh_weights(minilm, adapter_dirs):
    identity = KAdapterModel(minilm[0]).identity
    setting = ft.Setting("+F (w/o knowledge, frozen)", {"factual": adapter_dirs["F"]}, knowledge=False)
    trained = KnowledgeAdapter.from_pretrained(adapter_dirs["F"], backbone=identity)
    fresh = ft.build_adapter(setting, "factual", identity, seed=0)
    assert fresh.config == trained.config
    assert fresh.state_dict().keys() == trained.state_dict().keys()
    assert not torch.equal(fresh.adapter_layers[0].down_project.weight, trained.adapter_layers[0].down_project.weight)
    again = ft.build_adapter(setting, "factual", identity, seed=0)
    other = ft.build_adapter(setting, "factual", identity, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(fresh.adapter_layers[0].down_project.weight, other.adapter_layers[0].down_project.weight)
    # Its initialisation is the one knowledge pre-training starts from: a KnowledgeAdapter built from the config.
    torch.manual_seed(ft.random_init_seed(0, "factual"))
    start = KnowledgeAdapter(trained.config, identity)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), start.state_dict().values()))
    # Two random adapters of one setting are two different draws, even with the same architecture.
    both = ft.Setting("+F+L (w/o knowledge, frozen)", {"factual": adapter_dirs["F"], "linguistic": adapter_dirs["F"]},
                      knowledge=False)
    f, l_ = (ft.build_adapter(both, n, identity, seed=0) for n in ("factual", "linguistic"))
    assert f.config == l_.config and not torch.equal(f.adapter_layers[0].down_project.weight,
                                                     l_.adapter_layers[0].down_project.weight)


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_settings_train_exactly_the_intended_parameters(minilm, adapter_dirs, cache_root):
    backbone, tokenizer = minilm
    data = ft.load_task("openentity", limits=SMALL)
    settings = ft.standard_settings(adapter_dirs)[1:] + [
        ft.Setting("+F | backbone trained", {"factual": adapter_dirs["F"]}, backbone_trainable=True)]
    cfg = config(cache_root)
    encoded, _, features = ft.prepare_features(data, settings, [0], cfg, backbone, tokenizer)
    built = {s.name: ft.build_model(s, 0, data, encoded, features, backbone, tokenizer, cfg)[0] for s in settings}

    assert _trainable(built["backbone"]) == {"head.classifier.weight", "head.classifier.bias"}  # no fusion params
    for name in ("+F", "+L", "+F (w/o knowledge, frozen)", "+F+L"):
        model = built[name]
        assert isinstance(model, ft.PooledTaskModel)  # adapters and backbone are not even in the module
        assert _trainable(model) == {n for n, _ in model.named_parameters()}
        assert {n.split(".")[0] for n in _trainable(model)} == {"fusion", "head"}
    assert set(built["+F+L"].fusion.per_adapter) == {"factual", "linguistic"}

    control = built["+F (w/o knowledge, trained)"]
    assert isinstance(control, ft.AdapterTaskModel)  # over cached backbone states: no backbone in the module
    prefixes = {".".join(n.split(".")[:2]) for n in _trainable(control)}
    assert prefixes == {"adapters.factual", "pooled.fusion", "pooled.head"}
    assert _trainable(control) == {n for n, _ in control.named_parameters()}
    adapter = control.adapters["factual"]
    assert sum(p.numel() for p in adapter.parameters()) == sum(
        p.numel() for p in KnowledgeAdapter.from_pretrained(adapter_dirs["F"]).parameters())  # same capacity

    tuned = built["+F | backbone trained"]
    assert {n for n in _trainable(tuned) if n.startswith("encoder.backbone.")} == {
        f"encoder.backbone.{n}" for n, _ in backbone.named_parameters()}
    assert not any(n.startswith("encoder.adapters.") for n in _trainable(tuned))  # adapters stay frozen
    assert tuned.encoder.backbone is not backbone and not any(p.requires_grad for p in backbone.parameters())
    tuned.train()
    assert tuned.encoder.backbone.training  # dropout on while the backbone is fine-tuned
    with pytest.raises(ValueError, match="baseline"):
        ft.build_model(ft.Setting("majority", baseline="majority"), 0, data, encoded, features, backbone, tokenizer,
                       cfg)


@pytest.mark.parametrize("task", ["semeval", "cosmosqa"])
def test_pooled_shortcut_equals_the_full_model(minilm, adapter_dirs, cache_root, task):
    """Fusion + head on vectors taken at the markers == the whole KAdapterModel + head on token ids."""
    backbone, tokenizer = minilm
    data = ft.load_task(task, limits={"train": 4, "dev": 3, "test": 3})
    setting = ft.Setting("+F+L", {"factual": adapter_dirs["F"], "linguistic": adapter_dirs["L"]})
    cfg = config(cache_root, cache_dtype="float32")
    encoded, _, features = ft.prepare_features(data, [setting], [0], cfg, backbone, tokenizer)
    pooled, splits = ft.build_model(setting, 0, data, encoded, features, backbone, tokenizer, cfg)
    logits = ft.predict(pooled, *splits["test"])

    encoder = KAdapterModel(backbone, {n: p for n, p in setting.adapters.items()}, tokenizer=tokenizer)
    full = ft.SequenceTaskModel(data.task.kind, encoder, pooled.head)
    full.encoder.fusion.load_state_dict(pooled.fusion.state_dict())
    live = ft.predict(full, ft.TokensDataset(encoded["test"], data.task.kind),
                      ft.collate_tokens(data.task.kind, tokenizer.pad_token_id))
    assert logits.shape == live.shape == ((3, 4) if task == "cosmosqa" else (3, len(data.labels)))
    torch.testing.assert_close(logits, live, atol=1e-4, rtol=1e-4)

    # The trained-adapter path (adapters over cached states, fusion at the head's positions) is the same function.
    trained = ft.Setting("+F+L (adapters trained)", setting.adapters, adapters_trainable=True)
    _, _, with_taps = ft.prepare_features(data, [trained], [0], cfg, backbone, tokenizer)
    taps_model, taps_splits = ft.build_model(trained, 0, data, encoded, with_taps, backbone, tokenizer, cfg)
    taps_model.pooled.load_state_dict(pooled.state_dict())
    torch.testing.assert_close(ft.predict(taps_model, *taps_splits["test"]), live, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------ selection
def spy_on_evaluations(monkeypatch) -> list[tuple[str, dict]]:
    """Every (split, metrics) that fine-tuning evaluates, in order, appended to the returned list as it runs."""
    calls = []
    real = ft.evaluate_split

    def spy(model, dataset, collate, data_, split, batch_size=256):
        metrics, pred = real(model, dataset, collate, data_, split, batch_size)
        calls.append((split, metrics))
        return metrics, pred

    monkeypatch.setattr(ft.runner, "evaluate_split", spy)  # where the run loop looks it up
    return calls


def test_model_selection_on_dev_only_and_test_once(minilm, adapter_dirs, cache_root, tmp_path, monkeypatch):
    backbone, tokenizer = minilm
    data = ft.load_task("openentity", limits=SMALL)
    calls = spy_on_evaluations(monkeypatch)
    settings = [ft.Setting("majority", baseline="majority"), ft.Setting("backbone"),
                ft.Setting("+F", {"factual": adapter_dirs["F"]})]
    cfg = config(cache_root, epochs=3, patience=None, learning_rates=(3e-3,))
    results = ft.run_finetuning(data, settings, [0, 1], cfg, tmp_path, backbone, tokenizer)

    # 4 trained runs x (3 dev evaluations, then 1 test evaluation); the majority baseline trains nothing.
    assert [split for split, _ in calls] == (["dev"] * 3 + ["test"]) * 4
    model_runs = [r for r in results["runs"] if r["setting"] != "majority"]
    for i, run in enumerate(model_runs):
        dev_scores = [m["micro_f1"] for split, m in calls[4 * i:4 * i + 3]]
        assert [h["micro_f1"] for h in run["history"]] == dev_scores
        assert run["best_epoch"] == dev_scores.index(max(dev_scores))  # first best epoch, by dev only
        assert run["dev"]["micro_f1"] == max(dev_scores)
        assert run["test"] == calls[4 * i + 3][1]
    summary = {row["setting"]: row for row in results["summary"]}
    assert summary["backbone"]["n_seeds"] == 2 and summary["majority"]["n_seeds"] == 1
    mean = sum(summary["+F"]["test_values"]) / 2
    assert summary["+F"]["test_mean"] == pytest.approx(mean)
    assert results["paper_reference"]["values"]["+F"] == 77.53
    assert "different backbone" in results["paper_reference"]["note"].lower()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["summary"] == results["summary"]

    calls.clear()  # a rerun of the same configuration reuses the finished runs
    again = ft.run_finetuning(data, settings, [0, 1], cfg, tmp_path, backbone, tokenizer)
    assert calls == [] and again["summary"] == results["summary"]
    # ... also when only settings of another kind would see a change (the trained-adapter rate)
    again = ft.run_finetuning(data, settings, [0, 1], config(cache_root, epochs=3, patience=None,
                                                              learning_rates=(3e-3,), adapter_learning_rate=0.1,
                                                              trained_epochs=7), tmp_path, backbone, tokenizer)
    assert calls == []
    changed = config(cache_root, epochs=3, patience=None, learning_rates=(1e-2,))  # but not after a real change
    ft.run_finetuning(data, settings[:2], [0], changed, tmp_path, backbone, tokenizer)
    assert [split for split, _ in calls] == ["dev"] * 3 + ["test"]


def test_backbone_trained_run_fine_tunes_a_copy(minilm, cache_root, tmp_path):
    backbone, tokenizer = minilm
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    grad_before = [p.requires_grad for p in backbone.parameters()]
    data = ft.load_task("openentity", limits={"train": 4, "dev": 2, "test": 2})
    setting = ft.Setting("backbone | backbone trained", backbone_trainable=True)
    results = ft.run_finetuning(data, [setting], [0], config(cache_root, epochs=1, backbone_learning_rate=1e-3,
                                                             max_length=32), tmp_path, backbone, tokenizer)
    run = results["runs"][0]
    assert run["trainable_parameters"] == sum(p.numel() for p in backbone.parameters()) + 9 * 384 + 9
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # the shared one is untouched
    assert [p.requires_grad for p in backbone.parameters()] == grad_before  # (it runs alone or after others)
    # a finished run keeps its record and logs, not the trainer's checkpoint (weights + AdamW state) or best copy
    kept = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert not [k for k in kept if k.endswith((".pt", ".bin", ".safetensors"))], kept
    run_dir = tmp_path / "backbone_backbone_trained" / "seed0"
    assert {"run.json", "identity.json"} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "trainer_lr0.001" / "metrics.jsonl").is_file()
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) < 1_000_000


@pytest.mark.parametrize("keep", [True, False])
def test_feature_caches_are_deleted_after_a_task_unless_kept(minilm, adapter_dirs, tmp_path, keep):
    backbone, tokenizer = minilm
    data = ft.load_task("semeval", limits={"train": 6, "dev": 3, "test": 3})
    root = tmp_path / "cache"
    settings = [ft.Setting("+F", {"factual": adapter_dirs["F"]})]
    results = ft.run_finetuning(data, settings, [0], config(str(root), epochs=1, keep_feature_cache=keep),
                                tmp_path / "out", backbone, tokenizer)
    caches = [p.parent for p in root.rglob("meta.json")]
    assert results["runs"][0]["test"] and len(caches) == (3 if keep else 0)  # train, dev, test


def test_learning_rate_grid_is_searched_on_dev_only(minilm, cache_root, tmp_path, monkeypatch):
    backbone, tokenizer = minilm
    data = ft.load_task("openentity", limits=SMALL)
    recorded = spy_on_evaluations(monkeypatch)
    cfg = config(cache_root, epochs=2, patience=None, learning_rates=(1e-4, 3e-2))
    results = ft.run_finetuning(data, [ft.Setting("backbone")], [0], cfg, tmp_path, backbone, tokenizer)
    calls = [(split, metrics["micro_f1"]) for split, metrics in recorded]
    assert [split for split, _ in calls] == ["dev"] * 4 + ["test"]  # 2 rates x 2 epochs on dev, then test once
    run = results["runs"][0]
    searched = {entry["learning_rate"]: entry["dev"] for entry in run["learning_rate_search"]}
    assert searched == {1e-4: max(v for _, v in calls[:2]), 3e-2: max(v for _, v in calls[2:4])}
    assert run["learning_rate"] == max(searched, key=searched.get) and run["dev"]["micro_f1"] == max(searched.values())
    assert cfg.learning_rates_for(ft.Setting("+F (w/o knowledge, trained)", {"factual": "/x"}, knowledge=False,
                                             adapters_trainable=True)) == [cfg.adapter_learning_rate]


# ------------------------------------------------------------------------------------------------- truncation
def test_truncation_around_markers_is_counted_and_markers_survive(minilm):
    _, tokenizer = minilm
    for task, max_length, markers in (("openentity", 16, ["@"]), ("semeval", 12, ["@", "#"])):
        data = ft.load_task(task, limits={"train": 40, "dev": 20, "test": 20})
        encoded, stats = ft.encode_task(data, tokenizer, max_length)
        for split, enc in encoded.items():
            assert stats[split]["truncated"] == sum(enc["truncated"]) > 0
            for example in enc:
                assert len(example["input_ids"]) <= max_length
                tokens = tokenizer.convert_ids_to_tokens(example["input_ids"])
                assert [tokens[p] for p in example["positions"]] == markers
        _, wide = ft.encode_task(data, tokenizer, 256)
        assert all(s["truncated"] == 0 for s in wide.values())


# --------------------------------------------------------------------------------------------------- TACRED
def test_tacred_sample_loads_and_scores_end_to_end(minilm, cache_root, tmp_path, data_root):
    backbone, tokenizer = minilm
    data = ft.load_task("tacred")
    assert data.provenance["used_sizes"] == {"train": 20, "dev": 20, "test": 20}
    raw = json.loads((data_root / "tacred_sample" / "test.json").read_text())
    first = data.splits["test"][0]
    assert first["subj_end"] == raw[0]["subj_end"] + 1 and first["obj_end"] == raw[0]["obj_end"] + 1  # exclusive
    assert data.gold("test") == [r["relation"] for r in raw]
    gold = data.gold("test")
    assert ft.score(data.task, gold, gold)["f1"] == 1.0
    # Hand-computed: drop the first positive (a miss) and guess one extra positive on a no_relation (a wrong guess).
    positives = [i for i, g in enumerate(gold) if g != "no_relation"]
    negative = gold.index("no_relation")
    pred = list(gold)
    pred[positives[0]] = "no_relation"
    pred[negative] = gold[positives[1]]
    p, r = (len(positives) - 1) / len(positives), (len(positives) - 1) / len(positives)
    metrics = ft.score(data.task, gold, pred)
    assert (metrics["precision"], metrics["recall"]) == (pytest.approx(p), pytest.approx(r))

    results = ft.run_finetuning(data, [ft.Setting("majority", baseline="majority"), ft.Setting("backbone")], [0],
                                config(cache_root), tmp_path, backbone, tokenizer)
    majority = next(r for r in results["runs"] if r["setting"] == "majority")
    assert majority["majority"] == "no_relation" and majority["test"]["f1"] == 0.0
    assert {"precision", "recall", "f1"} <= set(results["runs"][1]["test"])
    assert results["paper_reference"]["values"]["backbone"] == 71.25


# ------------------------------------------------------------------------------------------------ tables
def _fake_results():
    settings = [ft.Setting("majority", baseline="majority"), ft.Setting("backbone"),
                ft.Setting("+F", {"factual": "/x"}),
                ft.Setting("+F (w/o knowledge, frozen)", {"factual": "/x"}, knowledge=False)]
    runs = [{"setting": "majority", "seed": None, "dev": {"acc": 0.25}, "test": {"acc": 0.20}},
            {"setting": "backbone", "seed": 0, "dev": {"acc": 0.50}, "test": {"acc": 0.40}},
            {"setting": "backbone", "seed": 1, "dev": {"acc": 0.60}, "test": {"acc": 0.50}},
            {"setting": "+F", "seed": 0, "dev": {"acc": 0.58}, "test": {"acc": 0.60}},
            {"setting": "+F", "seed": 1, "dev": {"acc": 0.58}, "test": {"acc": 0.62}},
            {"setting": "+F (w/o knowledge, frozen)", "seed": 0, "dev": {"acc": 0.55}, "test": {"acc": 0.45}},
            {"setting": "+F (w/o knowledge, frozen)", "seed": 1, "dev": {"acc": 0.65}, "test": {"acc": 0.45}}]
    return {"metric": "acc", "settings": [s.to_dict() for s in settings],
            "summary": ft.summarize(runs, "acc", [s.name for s in settings])}


def test_results_table_and_chart_by_hand():
    results = _fake_results()
    table = ft.results_table(results)
    assert list(table.index) == ["majority", "backbone", "+F", "+F (w/o knowledge, frozen)"]
    # backbone dev: mean 55, sample std of (50, 60) = 7.07
    assert table.loc["backbone", "dev acc"] == "55.00 ± 7.07"
    assert table.loc["majority", "test acc"] == "20.00 ± 0.00"
    assert table.loc["+F (w/o knowledge, frozen)", "knowledge"] == "none (random)"
    assert table.loc["+F (w/o knowledge, frozen)", "test acc"] == "45.00 ± 0.00"
    fig = results_bar_chart(results["summary"], "acc", reference={"backbone": 80.0})
    dev = next(t for t in fig.data if t.name == "dev")
    assert list(dev.y) == pytest.approx([25.0, 55.0, 58.0, 60.0])
    assert list(dev.error_y.array) == pytest.approx([0.0, 7.0710678, 0.0, 7.0710678])
    ref = next(t for t in fig.data if "paper" in t.name)
    assert list(ref.x) == ["backbone"] and list(ref.y) == [80.0]


def test_knowledge_verdicts_by_hand():
    results = _fake_results()
    # +F test 61 ± 1.41 vs backbone 45 ± 7.07: +16 points, spread sqrt(1.41² + 7.07²) = 7.21
    c = ft.compare(results, "+F", "backbone")
    assert c["difference"] == pytest.approx(16.0) and c["spread"] == pytest.approx(7.2111, abs=1e-3)
    assert c["beyond_spread"]
    # on dev: 58 ± 0 vs the control's 60 ± 7.07: -2 points, inside the spread
    c = ft.compare(results, "+F", "+F (w/o knowledge, frozen)", split="dev")
    assert c["difference"] == pytest.approx(-2.0) and not c["beyond_spread"]
    assert ft.compare(results, "+L", "backbone") is None
    lines = ft.knowledge_verdicts(results)
    assert len(lines) == 2
    assert lines[0].startswith("+F vs backbone: +16.00 points test acc (seed spread ±7.21)") and "helps" in lines[0]
    assert "+F vs +F (w/o knowledge, frozen): +16.00" in lines[1] and "knowledge rather than capacity" in lines[1]
    dev = ft.knowledge_verdicts(results, split="dev")
    assert "no evidence either way" in dev[1]
    results["summary"][1]["test_mean"] = 0.9  # backbone far above +F: the sentence says which is better
    assert ft.knowledge_verdicts(results)[0].endswith("no — backbone is better.")
    # both adapters trained downstream: knowledge vs a random start, capacity equal
    both = ["+F (adapters trained)", "+F (w/o knowledge, trained)"]
    runs = [{"setting": name, "seed": seed, "dev": {"acc": 0.5}, "test": {"acc": acc}}
            for name, accs in zip(both, [(0.70, 0.72), (0.60, 0.61)]) for seed, acc in enumerate(accs)]
    trained = {"metric": "acc", "summary": ft.summarize(runs + [{"setting": "+F", "seed": 0, "dev": {"acc": 0.5},
                                                                "test": {"acc": 0.5}}], "acc", both + ["+F"])}
    line = ft.knowledge_verdicts(trained)[-1]
    assert line.startswith("+F (adapters trained) vs +F (w/o knowledge, trained): +10.50 points test acc")
    assert "knowledge as the starting point of a trained adapter: helps" in line


# ------------------------------------------------------------------------------------------------- notebook
@pytest.mark.notebook
def test_notebook_smoke_run(tmp_path):
    from kadapter.notebook_run import execute_notebook

    from kadapter.pipeline import PROFILES

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "03_finetuning.ipynb"
    params = dict(ft.NOTEBOOK_SMOKE_PARAMETERS)
    params.update(output_dir=str(tmp_path / "out"), cache_root=str(tmp_path / "cache"), factual_adapter=None,
                  linguistic_adapter=None)
    execute_notebook(str(notebook), str(tmp_path / "executed.ipynb"), parameters=params,
                     execution_timeout=NOTEBOOK_CELL_TIMEOUT, cwd=str(notebook.parent))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["tasks"]) == set(params["tasks"])
    for task, entry in results["tasks"].items():
        names = [row["setting"] for row in entry["summary"]]
        assert {"majority", "backbone", "+F", "+F+L", "+F (w/o knowledge, frozen)",
                "+F+L (w/o knowledge, frozen)"} <= set(names)
        assert entry["adapters_untrained"] is True  # the smoke run's stand-in adapters are labelled as such
        per_task = json.loads((tmp_path / "out" / task / "results.json").read_text())
        assert per_task["adapters_untrained"] is True and per_task["summary"] == entry["summary"]
        assert all(e["truncated"] >= 0 for e in per_task["data"]["encoding"].values())
        assert (tmp_path / "out" / f"{task}_chart.html").is_file()
    # what a person opens later: no progress bar frozen as a widget, every chart works offline
    from kadapter.saved_outputs import run_problems

    assert run_problems(tmp_path) == []
    assert (tmp_path / "out" / "plotly.min.js").is_file()
    if "03_finetuning" in PROFILES.get("smoke", {}):
        assert set(PROFILES["smoke"]["03_finetuning"]) <= set(params) | {"output_dir"}
