"""Every saved adapter folder carries a README.md model card (Hub front matter; backbone, taps, data and its
hold-out, settings, steps, dev metrics beside the random twin and the majority baseline, licences), written by
``save_pretrained`` from what the folder records — here after a real pre-training run on FewRel and the real MiniLM."""
import re

import pytest
from datasets import DatasetDict

from kadapter import AdapterConfig, KAdapterModel, KnowledgeAdapter
from kadapter.backbone import backbone_identity
from kadapter.model_card import NOT_RECORDED
from kadapter.pretraining import PretrainConfig, pretrain_adapters, random_twin_name

TINY = AdapterConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)
HOLDOUT = {"probe_facts_removed": 17, "relations": ["P26", "P40"]}


@pytest.fixture(scope="module")
def encoder(minilm_path):
    return KAdapterModel.from_backbone(minilm_path)


@pytest.fixture(scope="module")
def trained(encoder, tmp_path_factory):
    from data_prep.eval_sets import load_fewrel

    dataset, _ = load_fewrel()
    dataset = dataset.filter(lambda r: r["relation"] in ("P26", "P40", "P25", "P361")).shuffle(seed=0)
    data = DatasetDict({"train": dataset.select(range(48)), "dev": dataset.select(range(48, 72))})
    out = tmp_path_factory.mktemp("pretrain")
    config = PretrainConfig(output_dir=str(out), max_length=32, epochs=2, batch_size=16, learning_rate=1e-3,
                            cache_root=str(out / "cache"), progress=False, device="cpu")
    results = pretrain_adapters("factual", data, {"f": TINY}, config, encoder=encoder, random_twins=["f"],
                                data_report={"source": "FewRel (test subset)", "holdout": HOLDOUT})
    return results, out / "adapters" / "f" / "README.md"


def _table_row(card: str, label: str) -> list[str]:
    line = next(line for line in card.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_the_card_says_what_the_folder_holds(trained, encoder):
    results, path = trained
    card = path.read_text()
    front = card.split("---")[1]
    assert "library_name: kadapter" in front and "base_model" not in front  # a local path is no Hub id
    identity = encoder.identity
    assert f"`{identity.name_or_path}`" in card and identity.weights_fingerprint in card
    assert "taps (hidden-state indices, 0 = embeddings): [0, 2, 4]" in card  # MiniLM's 6 layers
    assert "- source: FewRel (test subset)" in card and "- examples: train 48, dev 24" in card
    assert '"probe_facts_removed": 17' in card  # the hold-out, as recorded
    assert "- learning_rate: 0.001" in card and "- batch_size: 16" in card and "- epochs: 2" in card
    assert f"- optimizer steps: {results['steps']}" in card
    assert f"- best dev epoch: {results['models']['f']['best_epoch']}" in card

    header = _table_row(card, "model")
    metric = results["metric"]
    column = header.index(metric)
    twin = random_twin_name("f")
    assert float(_table_row(card, "this adapter")[column]) == pytest.approx(
        results["models"]["f"]["dev"][metric], abs=1e-4)
    assert float(_table_row(card, f"random twin ({twin})")[column]) == pytest.approx(
        results["models"][twin]["dev"][metric], abs=1e-4)
    assert float(_table_row(card, "majority")[column]) == pytest.approx(
        results["baselines"]["majority"][metric], abs=1e-4)
    assert "CC BY-NC 4.0" in card  # LAMA's evidence sentences, in the factual data
    assert "Apache-2.0" in card  # MiniLM


def test_an_untrained_adapter_card_says_what_is_not_recorded(encoder, tmp_path):
    adapter = KnowledgeAdapter(TINY, backbone_identity(encoder.backbone))
    card = (adapter.save_pretrained(tmp_path / "a", untrained=True) / "README.md").read_text()
    assert "(untrained: a fresh random draw)" in card
    assert f"- source: {NOT_RECORDED}" in card and f"Dev metrics: {NOT_RECORDED}." in card
    assert re.search(r"^- data: not recorded$", card, flags=re.M)


def test_a_hub_backbone_is_named_as_base_model(encoder, tmp_path):
    identity = backbone_identity(encoder.backbone)
    identity.name_or_path = "roberta-large"
    card = (KnowledgeAdapter(TINY, identity).save_pretrained(tmp_path / "b") / "README.md").read_text()
    assert "base_model: roberta-large" in card.split("---")[1]
    assert "MIT (FacebookAI/roberta-large)" in card
