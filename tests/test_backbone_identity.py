"""Backbone identity: stable across processes for a hub-style RoBERTa checkpoint (no pooler), recomputed after
in-place weight changes, and covering every key of any architecture's config.

The checkpoint is written the way the hub's roberta-large is (RobertaForMaskedLM.save_pretrained: no pooler weights,
a byte-level BPE tokenizer folder with <s> </s> <mask>), small: 4 layers, hidden 32, vocabulary 2,000."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from kadapter.backbone import config_fingerprint, load_backbone, weights_fingerprint

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    from kadapter.rehearsal import training_text, write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("roberta") / "ckpt", "narrow", texts=training_text(3000),
                            vocab_size=2000, num_hidden_layers=4, hidden_size=32, num_attention_heads=2,
                            intermediate_size=64)


def test_checkpoint_is_laid_out_like_the_hub(roberta_dir):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    with safe_open(str(roberta_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not [k for k in keys if "pooler" in k] and any(k.startswith("lm_head.") for k in keys)
    assert all(k.startswith(("roberta.", "lm_head.")) for k in keys)
    tok = AutoTokenizer.from_pretrained(roberta_dir)
    assert (tok.bos_token, tok.pad_token, tok.eos_token, tok.mask_token) == ("<s>", "<pad>", "</s>", "<mask>")
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.mask_token_id] == [0, 1, 2, len(tok) - 1]
    assert len(tok) == json.loads((roberta_dir / "config.json").read_text())["vocab_size"]


def test_random_pooler_is_left_out_of_the_fingerprint(roberta_dir):
    a, _ = load_backbone(str(roberta_dir))
    b, _ = load_backbone(str(roberta_dir))
    # from_pretrained drew two different poolers ...
    assert not torch.equal(a.pooler.dense.weight, b.pooler.dense.weight)
    assert a._kadapter_newly_initialized == ("pooler.dense.bias", "pooler.dense.weight")
    # ... which the identity ignores; every loaded tensor still counts
    assert weights_fingerprint(a) == weights_fingerprint(b)
    with torch.no_grad():
        b.encoder.layer[0].output.dense.bias.add_(1e-3)
    assert weights_fingerprint(a) != weights_fingerprint(b)


def test_a_model_built_from_a_config_is_hashed_whole():
    from kadapter.model import random_backbone

    model = random_backbone("roberta", vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32)
    before = weights_fingerprint(model)
    with torch.no_grad():
        model.pooler.dense.weight.mul_(2.0)
    assert weights_fingerprint(model) != before


PROCESS_A = """
import json, sys, torch
from datasets import Dataset
from kadapter import AdapterConfig, KAdapterModel
from kadapter.cache import FeatureCache
from kadapter.training import TrainConfig, train
ckpt, out = sys.argv[1], sys.argv[2]
model = KAdapterModel.from_backbone(ckpt, adapters={"factual": AdapterConfig(hidden_size=16, num_attention_heads=2,
                                                                           intermediate_size=32)})
sentences = ["Dante was born in Florence.", "Paris is the capital of France.", "Ravens can fly.",
             "The official language of Mauritius is English."]
data = Dataset.from_dict(dict(model.tokenizer(sentences)))
cache = FeatureCache.build(model, data, tokenizer=model.tokenizer, max_length=32, taps=model.tap_layers,
                           root=out + "/cache", progress=False)
class Step(torch.nn.Module):  # one real optimizer step on the adapter, from the cached features
    def __init__(self):
        super().__init__(); self.model = model
    def forward(self, index):
        feats = cache.features(index.tolist())
        return {"loss": model(features=feats).last_hidden_state.pow(2).mean()}
model.backbone.requires_grad_(False)
train(Step(), list(range(4)), TrainConfig(output_dir=out + "/train", epochs=1, batch_size=4, progress=False,
      cpu=True), collate_fn=lambda idx: {"index": torch.tensor(idx)})
model.adapters["factual"].save_pretrained(out + "/factual")
print(json.dumps({"hit": cache.hit, "path": str(cache.path), "identity": model.identity.to_dict()}))
"""

PROCESS_B = """
import json, sys
from datasets import Dataset
from kadapter import KAdapterModel, KnowledgeAdapter
from kadapter.cache import FeatureCache
ckpt, out = sys.argv[1], sys.argv[2]
model = KAdapterModel.from_backbone(ckpt, adapters={"factual": out + "/factual"})  # strict, identity checked
sentences = ["Dante was born in Florence.", "Paris is the capital of France.", "Ravens can fly.",
             "The official language of Mauritius is English."]
data = Dataset.from_dict(dict(model.tokenizer(sentences)))
cache = FeatureCache.build(model, data, tokenizer=model.tokenizer, max_length=32, taps=model.tap_layers,
                           root=out + "/cache", progress=False)
print(json.dumps({"hit": cache.hit, "path": str(cache.path), "identity": model.identity.to_dict()}))
"""


def _run(script: str, *args) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_adapter_and_cache_from_one_process_are_used_in_another(roberta_dir, tmp_path):
    a = _run(PROCESS_A, roberta_dir, tmp_path)
    b = _run(PROCESS_B, roberta_dir, tmp_path)
    assert not a["hit"] and b["hit"] and a["path"] == b["path"]
    assert a["identity"] == b["identity"]


def test_in_place_weight_change_changes_fingerprint_and_misses_the_cache(roberta_dir, tmp_path):
    """Issue 14 case 1: after `weight.mul_(1.5)` a rebuild must recompute, and agree with a live pass."""
    from datasets import Dataset

    from kadapter import KAdapterModel
    from kadapter.backbone import extract_features
    from kadapter.cache import FeatureCache

    model = KAdapterModel.from_backbone(str(roberta_dir))
    data = Dataset.from_dict(dict(model.tokenizer(["Dante was born in Florence.", "Ravens can fly."])))
    build = dict(tokenizer=model.tokenizer, max_length=16, taps=(0, 2), root=tmp_path, progress=False,
                 storage_dtype="float32")
    first = FeatureCache.build(model, data, **build)
    before = weights_fingerprint(model.backbone)
    with torch.no_grad():
        model.backbone.encoder.layer[3].intermediate.dense.weight.mul_(1.5)
    assert weights_fingerprint(model.backbone) != before
    second = FeatureCache.build(model, data, **build)
    assert not second.hit and second.path != first.path
    ids = torch.tensor([data[0]["input_ids"]])
    live = extract_features(model.backbone, ids, layers=(0, 2))
    torch.testing.assert_close(second.features([0]).last_hidden_state, live.last_hidden_state, rtol=0, atol=1e-5)
    # a copy (the backbone-trained fine-tuning rows deep-copy it) is recomputed, and equal
    import copy

    assert weights_fingerprint(copy.deepcopy(model.backbone)) == weights_fingerprint(model.backbone)


def test_config_fingerprint_covers_every_architecture_key(roberta_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(roberta_dir)
    base = config_fingerprint(config)
    # volatile keys: where it was loaded from, versions, output switches
    for key, value in [("_name_or_path", "elsewhere"), ("transformers_version", "0.0"), ("output_hidden_states", True),
                       ("architectures", ["RobertaModel"])]:
        changed = AutoConfig.from_pretrained(roberta_dir)
        setattr(changed, key, value)
        assert config_fingerprint(changed) == base, key
    # keys a BERT-only list missed: RoBERTa's bos/eos ids, a Gemma-style sliding window, rope settings
    for key, value in [("bos_token_id", 5), ("sliding_window", 512), ("rope_theta", 1e4), ("layer_norm_eps", 1e-6)]:
        changed = AutoConfig.from_pretrained(roberta_dir)
        setattr(changed, key, value)
        assert config_fingerprint(changed) != base, key
