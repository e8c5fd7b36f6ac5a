"""Issue 21, training / caches / probe identity (items 2, 3, 4, 5, 6, 19, 24, 27 and the no-unpickling grep), each
reproduced on real inputs (TACRED-sample sentences, LAMA prefixes, the real MiniLM, tiny random models built from
configs) and files the kit wrote, copied or broken in a temporary folder. Names that are new with the fixes are
imported inside the tests, so each test fails on its own where its fix is missing.
"""
import copy
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kadapter import AdapterConfig, KAdapterModel
from kadapter.config import BackboneIdentity
from kadapter.safe_files import DamagedFileError
from training_fixtures import BagOfWords, Killed, collate

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


# ================================================================== item 2: nothing the kit reads is unpickled
def _kit_sources() -> list[tuple[str, str]]:
    """(where, code) of every Python file under kadapter/ and data_prep/ and every notebook code cell."""
    import nbformat

    sources = [(str(p.relative_to(ROOT)), p.read_text()) for folder in ("kadapter", "data_prep")
               for p in sorted((ROOT / folder).rglob("*.py"))]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(str(notebook), as_version=4).cells):
            if cell.cell_type == "code":
                sources.append((f"{notebook.relative_to(ROOT)} cell {i}", cell.source))
    return sources


def _call_text(code: str, start: int) -> str:
    """The text of the call whose opening parenthesis is at or after ``start``, up to its closing one."""
    depth, i = 0, code.index("(", start)
    for j in range(i, len(code)):
        depth += {"(": 1, ")": -1}.get(code[j], 0)
        if depth == 0:
            return code[start:j + 1]
    return code[start:]


UNPICKLING = re.compile(r"\b(c?[pP]ickle|joblib|dill|cloudpickle)\.loads?\(|\bread_pickle\(|allow_pickle\s*=\s*True|"
                        r"weights_only\s*=\s*False|\.Unpickler\(")


def test_item02_no_reader_in_the_kit_unpickles():
    """Every ``torch.load`` passes ``weights_only=True``; no pickle / joblib / dill load, no ``allow_pickle=True``."""
    sources = _kit_sources()
    assert len(sources) > 40 and any("torch.load(" in code for _, code in sources)  # the scan sees the kit
    problems = [f"{where}: {match.group(0)}" for where, code in sources for match in UNPICKLING.finditer(code)]
    for where, code in sources:
        for match in re.finditer(r"\btorch\.load\(", code):
            call = _call_text(code, match.start())
            if not re.search(r"weights_only\s*=\s*True", call):
                problems.append(f"{where}: {call}")
    assert not problems, "readers that can run code from a file:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def relation_data(tokenizer, data_root):
    """16 real TACRED-sample training sentences (token ids, relation label), the vocabulary and label counts."""
    from datasets import Dataset

    from data_prep.eval_sets import read_tacred

    records = read_tacred(data_root / "tacred_sample" / "train.json")[0]
    labels = sorted(set(records["relation"]))
    ids = tokenizer([" ".join(t) for t in records["tokens"][:16]], truncation=True, max_length=32)["input_ids"]
    data = Dataset.from_dict({"input_ids": ids, "label": [labels.index(r) for r in records["relation"][:16]]})
    return data, len(tokenizer), len(labels)


def _config(output_dir, **overrides):
    from kadapter.training import TrainConfig

    settings = dict(epochs=2, batch_size=4, learning_rate=1e-2, cpu=True, progress=False, checkpoint_every=2,
                    log_every=1)
    return TrainConfig(output_dir=str(output_dir), **{**settings, **overrides})


def _fit(relation_data, output_dir, kill_at=None, model=None, collate=collate, **overrides):
    from kadapter.training import train

    data, vocab, labels = relation_data
    if model is None:
        torch.manual_seed(0)
        model = BagOfWords(vocab, labels)

    def hook(trainer):
        if kill_at is not None and trainer.state.global_step == kill_at:
            raise Killed

    return train(model, data, _config(output_dir, **overrides), collate_fn=collate, step_hook=hook), model


class _Planted:
    """Unpickling this creates ``marker``: the stand-in for code a planted checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_item02_a_planted_pickle_in_a_run_folder_is_refused_on_resume_without_running(relation_data, tmp_path):
    _, reference = _fit(relation_data, tmp_path / "full")
    with pytest.raises(Killed):
        _fit(relation_data, tmp_path / "run", kill_at=5)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    genuine = checkpoint.read_bytes()
    saved = torch.load(io.BytesIO(genuine), weights_only=True)  # what the kit writes reads back without unpickling
    marker = tmp_path / "code_ran"
    torch.save({**saved, "rng": [_Planted(marker)]}, checkpoint)  # someone shares a run folder with this in it
    with pytest.raises(DamagedFileError, match="refused") as error:
        _fit(relation_data, tmp_path / "run")
    assert error.value.path == str(checkpoint)
    assert not marker.exists()
    checkpoint.write_bytes(genuine)  # the genuine checkpoint resumes to the uninterrupted run's exact weights
    summary, resumed = _fit(relation_data, tmp_path / "run")
    assert summary["steps"] == 8
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), reference.state_dict().values()))


# ========================================================== items 3 and 19: the causal-LM states cache
@pytest.fixture(scope="module")
def tiny_causal():
    """A tiny random Gemma-architecture LM (built from its config) and real LAMA T-REx prefixes as token ids."""
    from kadapter.probing import prefix_facts, prefix_ids
    from data_prep.lama import load_trex_facts
    from tokenizer_fixtures import roberta_bpe_tokenizer, tiny_random_gemma

    tokenizer = roberta_bpe_tokenizer()
    backbone = tiny_random_gemma(tokenizer)
    kept, _ = prefix_facts(load_trex_facts(["P19", "P36"], limit=4)[0])
    return backbone, tokenizer, [prefix_ids(tokenizer, f["prefix"]) for f in kept]


def _states(backbone, tokenizer, sequences, root):
    from kadapter.probing import CausalStates

    return CausalStates.build(backbone, sequences, pad_id=tokenizer.pad_token_id, taps=[0, 2], root=root,
                              batch_size=3)


def _live_last(backbone, tokenizer, sequences) -> torch.Tensor:
    from kadapter.probing import causal_forward

    return torch.stack([causal_forward(backbone, [s], tokenizer.pad_token_id)[0][0, -1] for s in sequences])


def test_item03_causal_states_follow_an_in_place_weight_change_and_a_copy(tiny_causal, tmp_path):
    from kadapter.probing.states import core_module
    from kadapter.state_store import backbone_fingerprints

    backbone, tokenizer, sequences = tiny_causal
    original = _states(backbone, tokenizer, sequences, tmp_path)
    # one identity for every cache: the feature cache's backbone fingerprints
    assert {k: original.key[k] for k in ("backbone_weights", "backbone_config")} == backbone_fingerprints(backbone)
    changed = copy.deepcopy(backbone)  # a copy carries no stale hash of the original
    with torch.no_grad():
        core_module(changed).layers[1].mlp.down_proj.weight.mul_(1.5)  # in place: the same tensors, other values
    states = _states(changed, tokenizer, sequences, tmp_path)
    assert not states.hit and states.path != original.path
    live = _live_last(changed, tokenizer, sequences)
    assert torch.allclose(states.last_final(), live, atol=1e-4)
    assert not torch.allclose(original.last_final(), live, atol=1e-2)  # the stale states would be this far off
    with torch.no_grad():
        core_module(changed).layers[1].mlp.down_proj.weight.mul_(2.0)  # a second in-place change of the same model
    again = _states(changed, tokenizer, sequences, tmp_path)
    assert not again.hit and again.path not in (states.path, original.path)
    assert torch.allclose(again.last_final(), _live_last(changed, tokenizer, sequences), atol=1e-4)
    assert _states(backbone, tokenizer, sequences, tmp_path).hit  # the untouched original still finds its own


@pytest.mark.parametrize("damage", ["missing meta.json", "truncated meta.json", "truncated final.npy",
                                    "truncated hidden_2.npy", "truncated lengths.npy"])
def test_item19_a_damaged_states_folder_is_named_and_rebuilt(tiny_causal, tmp_path, damage):
    from kadapter.probing import CausalStates

    backbone, tokenizer, sequences = tiny_causal
    first = _states(backbone, tokenizer, sequences, tmp_path)
    want = first.last_final().clone()
    broken = first.path / damage.split(" ")[1]
    if damage.startswith("missing"):
        broken.unlink()
        with pytest.raises(FileNotFoundError, match=re.escape(str(broken))):
            CausalStates(first.path)
    else:
        _truncate(broken, 0.7)
        with pytest.raises(DamagedFileError) as error:
            CausalStates(first.path)
        assert error.value.path == str(broken)
    with pytest.warns(UserWarning, match=f"causal LM states {re.escape(str(first.path))} is damaged"):
        rebuilt = _states(backbone, tokenizer, sequences, tmp_path)
    assert not rebuilt.hit and rebuilt.path == first.path
    assert torch.equal(rebuilt.last_final(), want)
    assert _states(backbone, tokenizer, sequences, tmp_path).hit


def test_item19_a_killed_builds_temp_folder_is_removed_and_a_live_ones_kept(tiny_causal, tmp_path):
    backbone, tokenizer, sequences = tiny_causal
    first = _states(backbone, tokenizer, sequences, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale, running = (tmp_path / f".{first.path.name}.tmp-{p.pid}" for p in (dead, alive))
        for folder in (stale, running):
            shutil.copytree(first.path, folder)
            (folder / "meta.json").unlink()  # killed before the end
        with pytest.warns(UserWarning, match=f"removed {re.escape(str(stale))}"):
            again = _states(backbone, tokenizer, sequences, tmp_path)
        assert again.hit and not stale.exists() and running.is_dir()
    finally:
        alive.kill()
        alive.wait()


def test_item19_an_interrupted_states_build_leaves_nothing_that_looks_finished(tiny_causal, tmp_path, monkeypatch):
    from kadapter.probing import states as states_module

    backbone, tokenizer, sequences = tiny_causal

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(states_module, "causal_forward", killed)
        with pytest.raises(Killed):
            _states(backbone, tokenizer, sequences, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no final folder, no temporary one
    assert not _states(backbone, tokenizer, sequences, tmp_path).hit


# ======================================================================= item 4: non-finite loss or gradient
def test_item04_an_infinite_learning_rate_stops_training_naming_the_step(relation_data, tmp_path):
    from kadapter.training import NonFiniteTrainingError

    step_two = r"\[train\] the loss is (nan|inf) at step 2 \(epoch 1, batch 2 of 4\)"
    with pytest.raises(NonFiniteTrainingError, match=step_two):
        _fit(relation_data, tmp_path / "run", learning_rate=float("inf"))
    assert not (tmp_path / "run" / "train_summary.json").exists()  # no finished run, no dev score


class _SqrtAtZero(BagOfWords):
    """A finite loss whose gradient is not: sqrt(|w - w0|) at w = w0."""

    def forward(self, input_ids, offsets, labels):
        loss = super().forward(input_ids, offsets, labels)["loss"]
        return {"loss": loss + (self.out.weight - self.out.weight.detach()).abs().sqrt().sum()}


def test_item04_a_non_finite_gradient_norm_stops_training_naming_the_step(relation_data, tmp_path):
    from kadapter.training import NonFiniteTrainingError

    _, vocab, labels = relation_data
    for max_grad_norm in (1.0, 0.0):  # measured whether or not it clips
        with pytest.raises(NonFiniteTrainingError, match="the gradient norm is (nan|inf) at step 1 "):
            _fit(relation_data, tmp_path / f"run{max_grad_norm}", model=_SqrtAtZero(vocab, labels),
                 max_grad_norm=max_grad_norm)


@pytest.fixture(scope="module")
def minilm(minilm_path):
    torch.manual_seed(0)
    return KAdapterModel.from_backbone(minilm_path, adapters={"factual": AdapterConfig(**TINY)})


def test_item04_the_demo_never_ranks_nan(minilm):
    from kadapter.probing import build_probe, compare_topk

    fine, broken = build_probe(minilm, ["factual"], seed=0), build_probe(minilm, ["factual"], seed=1)
    with torch.no_grad():
        broken.head.dense.weight.fill_(float("nan"))  # what a diverged training run leaves
    text = "Dante was born in [MASK]."
    assert len(compare_topk(minilm, {"+F": fine}, text, k=3)["+F"]) == 3
    with pytest.raises(ValueError, match=r"probe '\+F diverged' gives non-finite probabilities"):
        compare_topk(minilm, {"+F": fine, "+F diverged": broken}, text, k=3)
    from kadapter.demo import ProbingDemo

    demo = ProbingDemo(minilm, {"+F": fine}, k=3)
    demo.text.value = text
    assert demo.last_results and not demo.last_error
    demo = ProbingDemo(minilm, {"+F": fine, "+F diverged": broken}, k=3)
    demo.text.value = text  # the widget shows the error and no ranking, never a NaN table
    assert demo.last_results == {} and demo.last_figure is None and "non-finite" in demo.last_error


# ============================================================ item 5: a probe records the adapters it reads
def test_item05_a_probe_refuses_a_different_adapter_of_the_same_name(minilm, tmp_path):
    from kadapter.probing import MaskedLMProbe, build_probe

    folder = build_probe(minilm, ["factual"], seed=0).save_pretrained(tmp_path / "probe")
    recorded = json.loads((folder / "probe_config.json").read_text())["adapters"]["factual"]
    assert recorded["config"] == minilm.adapters["factual"].config.to_dict()
    MaskedLMProbe.from_pretrained(folder, minilm)  # over the adapter it was trained over: loads
    torch.manual_seed(1)
    other_weights = KAdapterModel(minilm.backbone, {"factual": AdapterConfig(**TINY)}, tokenizer=minilm.tokenizer)
    with pytest.raises(ValueError, match=r"another adapter 'factual'[^\n]*\n  weights: fingerprint"):
        MaskedLMProbe.from_pretrained(folder, other_weights)
    other_shape = KAdapterModel(minilm.backbone, {"factual": AdapterConfig(**{**TINY, "hidden_size": 64},
                                                                           tap_layers=(0, 3))},
                                tokenizer=minilm.tokenizer)
    with pytest.raises(ValueError, match=r"another adapter 'factual'(.|\n)*hidden_size: probe trained over 32, "
                                         r"model has 64"):
        MaskedLMProbe.from_pretrained(folder, other_shape)


# ========================================== item 6: resume checks every architecture and trajectory field
class _AdapterClassifier(torch.nn.Module):
    """Real token ids -> embeddings -> a knowledge adapter tapping them -> mean over tokens -> relation logits."""

    def __init__(self, vocab: int, labels: int, config: AdapterConfig):
        from kadapter import KnowledgeAdapter

        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 16)
        self.adapter = KnowledgeAdapter(config, BackboneIdentity("embeddings", "bert", 16, 2, "-", "-"))
        self.out = torch.nn.Linear(16, labels)

    def forward(self, input_ids, attention_mask, labels):
        x = self.embed(input_ids)
        h = self.adapter({0: x, 2: x}, attention_mask)
        pooled = (h * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return {"loss": torch.nn.functional.cross_entropy(self.out(pooled), labels)}


def _padded(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows])
    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["label"] for r in rows])}


ADAPTER = dict(tap_layers=(0, 2), hidden_size=8, num_attention_heads=2, intermediate_size=16,
               num_transformer_layers=1)


def _fit_adapter(relation_data, output_dir, kill_at=None, adapter=None, **overrides):
    _, vocab, labels = relation_data
    torch.manual_seed(0)
    model = _AdapterClassifier(vocab, labels, AdapterConfig(**{**ADAPTER, **(adapter or {})}))
    return _fit(relation_data, output_dir, kill_at, model=model, collate=_padded, **overrides)


@pytest.mark.parametrize("field, value", [("hidden_act", "relu"), ("causal", True), ("tap_norm", "rms"),
                                          ("skip_interval", 1), ("num_attention_heads", 4),
                                          ("faithful_padding", True)])
def test_item06_resume_refuses_a_shape_neutral_architecture_change(relation_data, tmp_path, field, value):
    with pytest.raises(Killed):
        _fit_adapter(relation_data, tmp_path / "run", kill_at=5)
    with pytest.raises(ValueError, match=rf"adapter\.config\.{field}: .* -> {re.escape(repr(value))}") as error:
        _fit_adapter(relation_data, tmp_path / "run", adapter={field: value})
    assert str(tmp_path / "run" / "checkpoint.pt") in str(error.value)
    summary, _ = _fit_adapter(relation_data, tmp_path / "run", desc="resumed", log_every=3)  # run-only fields
    assert summary["steps"] == 8


def test_item06_resume_refuses_any_trajectory_field_of_the_train_config(relation_data, tmp_path):
    with pytest.raises(Killed):
        _fit(relation_data, tmp_path / "run", kill_at=5)
    for field, value in [("greater_is_better", False), ("weight_decay", 0.0)]:
        with pytest.raises(ValueError, match=rf"{field}: .* -> {value!r}"):
            _fit(relation_data, tmp_path / "run", **{field: value})


# =============================================== item 24: the "w/o knowledge" twin's pre-training record
@pytest.fixture()
def pretraining_run(minilm, tmp_path):
    """A pre-training run folder as pretrain_adapters leaves it: adapters/factual/ and results.json."""
    from kadapter.probing import write_results

    run = tmp_path / "run"
    adapter_dir = minilm.adapters["factual"].save_pretrained(run / "adapters" / "factual")
    write_results({"kind": "factual", "models": {"factual": {"seed": 61968, "adapter": ADAPTER}},
                   "data": {"holdout": {"facts": 3}}, "labels": ["P19"]}, run / "results.json")
    return adapter_dir, run / "results.json"


def test_item24_a_damaged_pretraining_record_is_named(pretraining_run):
    from kadapter.probing import adapter_init_seed, holdout_info

    adapter_dir, results = pretraining_run
    assert adapter_init_seed(adapter_dir) == 61968
    _truncate(results, 0.6)
    with pytest.raises(DamagedFileError, match="not valid JSON at line") as error:
        adapter_init_seed(adapter_dir)
    assert error.value.path == str(results)
    with pytest.raises(DamagedFileError) as error:
        holdout_info(results)
    assert error.value.path == str(results)
    results.write_text(json.dumps({"models": {"factual": {"seed": "61968"}}}))
    with pytest.raises(DamagedFileError, match=r"field 'models\.factual\.seed'"):
        adapter_init_seed(adapter_dir)


# ============================================================== item 27: AdapterConfig checks its fields
@pytest.mark.parametrize("field, value, error, message", [
    ("num_attention_heads", 0, ValueError, "num_attention_heads must be >= 1, got 0"),
    ("num_attention_heads", 3, ValueError, "hidden_size 32 is not a multiple of num_attention_heads 3"),
    ("num_attention_heads", 2.0, TypeError, "num_attention_heads must be an integer, got 2.0"),
    ("hidden_act", "swish", ValueError, r"hidden_act 'swish' is not one of \['gelu', 'gelu_new', 'relu'\]"),
    ("causal", "no", TypeError, "causal must be true, false or None"),
    ("faithful_padding", 1, TypeError, "faithful_padding must be true or false"),
    ("hidden_size", 0, ValueError, "hidden_size must be >= 1"),
    ("dropout", 1.5, ValueError, r"dropout must be in \[0, 1\)"),
])
def test_item27_adapter_config_fields_are_checked(field, value, error, message):
    with pytest.raises(error, match=message):
        AdapterConfig(**{**TINY, field: value})


def test_item27_an_edited_adapter_config_file_is_an_error_naming_file_and_field(minilm, tmp_path):
    from kadapter import KnowledgeAdapter

    folder = minilm.adapters["factual"].save_pretrained(tmp_path / "factual")
    config_path = folder / "adapter_config.json"
    payload = json.loads(config_path.read_text())
    for field, value in [("causal", "no"), ("num_attention_heads", 0), ("hidden_act", "swish")]:
        config_path.write_text(json.dumps({**payload, "adapter": {**payload["adapter"], field: value}}))
        with pytest.raises(DamagedFileError, match=f"field 'adapter': .*{field}") as raised:
            KnowledgeAdapter.from_pretrained(folder, minilm.identity)
        assert raised.value.path == str(config_path)


def test_item06_the_architecture_record_ignores_where_the_backbone_was_loaded_from(minilm_path, tmp_path):
    """What is compared is what the model computes: the same MiniLM from a copied folder resumes, another adapter
    activation does not."""
    from kadapter.checkpoints import architecture, resume_differences

    copied = shutil.copytree(minilm_path, tmp_path / "minilm-copy")
    adapters = {"factual": AdapterConfig(**TINY)}
    here = KAdapterModel.from_backbone(minilm_path, adapters=adapters)
    there = KAdapterModel.from_backbone(str(copied), adapters=adapters)
    assert here.backbone.config._name_or_path != there.backbone.config._name_or_path
    assert resume_differences(architecture(here), architecture(there)) == {}
    relu = KAdapterModel.from_backbone(str(copied), adapters={"factual": AdapterConfig(**TINY, hidden_act="relu")})
    assert set(resume_differences(architecture(here), architecture(relu))) == {
        "adapters.factual.config.hidden_act",
        *(f"adapters.factual.adapter_layers.{i}.layers.0.activation (module)" for i in range(3))}


def test_item24_the_wo_knowledge_twin_reads_the_adapter_config_safely(minilm, tmp_path):
    """Fine-tuning's "w/o knowledge" setting builds a fresh adapter from the saved adapter's config file: a damaged
    file is an error naming it (and the line or field), not a bare JSONDecodeError / KeyError."""
    from kadapter.finetuning.settings import Setting, build_adapter

    folder = minilm.adapters["factual"].save_pretrained(tmp_path / "factual")
    setting = Setting("F w/o knowledge", {"factual": str(folder)}, knowledge=False)
    twin = build_adapter(setting, "factual", minilm.identity, seed=0)
    assert twin.config == minilm.adapters["factual"].config
    config_path = folder / "adapter_config.json"
    payload = json.loads(config_path.read_text())
    for broken, message in [(config_path.read_text()[:40], "not valid JSON at line"),
                            (json.dumps({"backbone": payload["backbone"]}), "field 'adapter' missing"),
                            (json.dumps({**payload, "adapter": {**payload["adapter"], "hidden_act": "swish"}}),
                             "field 'adapter': .*hidden_act 'swish'")]:
        config_path.write_text(broken)
        with pytest.raises(DamagedFileError, match=message) as error:
            build_adapter(setting, "factual", minilm.identity, seed=0)
        assert error.value.path == str(config_path)
