"""Issue 21, names / paths / files / data (items 11, 12, 13, 16, 17, 18, 20, 22, 25): each case reproduced on real
files (copied to a temporary folder and broken there where the case is a broken file) or a tiny model built from a
config.

Every test asserts the clear error (file, and line or field where there is one), the counted skip, or the right
result — never a silent wrong result or a bare library error. Names that are new with the fixes are imported inside
the tests, so each test fails on its own where the fix is missing.
"""
import json
import shutil
from pathlib import Path

import pytest


# ------------------------------------------------------------------------------ 13: the LAMA hold-out by pair
def test_item13_a_probe_facts_entity_pair_is_held_out_under_every_relation_and_order(data_root):
    """Re-DocRED dev document 9 states "Phnom Penh, capital of Cambodia" labelled P1376, and also P131, P17 (Phnom
    Penh -> Cambodia), P150 and P36 (Cambodia -> Phnom Penh); the LAMA probe asks P1376 (Phnom Penh -> Cambodia)."""
    from data_prep.factual import ProbeFacts, hold_out_probe_facts, load_redocred, record_label_key, \
        redocred_examples

    docs = load_redocred("dev", limit=10)
    records, _ = redocred_examples(docs)
    pair = [r for r in records if {record_label_key(r)[1], record_label_key(r)[2]} == {"phnompenh", "cambodia"}]
    assert {"P1376", "P131", "P17", "P150", "P36"} <= {r["relation"] for r in pair}
    probe = ProbeFacts.from_lama(["P1376"])
    kept, report = hold_out_probe_facts(records, probe)
    assert not [r for r in kept if r in pair]  # all held out, not only the one labelled P1376
    assert report["examples_removed"] == len(records) - len(kept) >= 4
    assert report["removed_under_another_relation_or_order"] >= 4
    assert "either order and under any relation" in report["rule"]
    from kadapter.probing import holdout_info

    info = holdout_info({"options": {"hold_out_probe": True}, "holdout": report, "per_relation": {}})
    assert info["rule"] == report["rule"]


# ------------------------------------------------------------------------------------------- shared fixtures
TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_transformer_layers=1)


@pytest.fixture(scope="module")
def minilm(minilm_path):
    import torch

    from kadapter import AdapterConfig, KAdapterModel

    torch.manual_seed(0)
    return KAdapterModel.from_backbone(minilm_path, adapters={"factual": AdapterConfig(**TINY)})


def _probe_set(model, directory: Path) -> Path:
    from kadapter.probing import save_probe_set
    from kadapter.probing.masked import build_probe

    return save_probe_set(model, {"backbone | seed 0": build_probe(model, [], seed=0),
                                  "+factual | seed 0": build_probe(model, ["factual"], seed=0)}, directory)


# ------------------------------------------------------------------------------ 11: names are names, not paths
def test_item11_an_adapter_listed_by_absolute_path_in_the_model_config_is_refused(minilm, tmp_path):
    from kadapter import KAdapterModel
    from kadapter.safe_files import DamagedFileError

    saved = minilm.save_pretrained(tmp_path / "model")
    outside = minilm.adapters["factual"].save_pretrained(tmp_path / "outside")  # a real adapter, elsewhere
    config = json.loads((saved / "kadapter_config.json").read_text())
    for bad in (str(outside), "../outside", "..", "sub/factual"):
        (saved / "kadapter_config.json").write_text(json.dumps({**config, "adapters": [bad]}))
        with pytest.raises(DamagedFileError, match=r"kadapter_config\.json: field 'adapters\[0\]'.*not.*name"):
            KAdapterModel.from_pretrained(saved, backbone=minilm.backbone, tokenizer=minilm.tokenizer)


def test_item11_an_adapter_named_by_a_path_is_refused_before_anything_is_written(minilm, tmp_path):
    from kadapter import AdapterConfig, KAdapterModel

    model = KAdapterModel(minilm.backbone, tokenizer=minilm.tokenizer)
    for bad in (str(tmp_path / "elsewhere"), "../elsewhere", "a/b", "a\\b", "", "."):
        with pytest.raises(ValueError, match="adapter name"):
            model.add_adapter(bad, AdapterConfig(**TINY))
    assert model.adapter_names == []
    model.add_adapter("factual v2", AdapterConfig(**TINY))  # a name may hold spaces and dots
    model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_item11_a_probe_folder_outside_the_probe_set_is_refused(minilm, tmp_path):
    from kadapter.probing import load_probe_set
    from kadapter.safe_files import DamagedFileError

    probe_set = _probe_set(minilm, tmp_path / "probe_set")  # probes/../../outside is tmp_path/outside
    shutil.copytree(probe_set / "probes" / "00", tmp_path / "outside")  # a real probe, outside the set
    listing = json.loads((probe_set / "probes.json").read_text())
    for bad in ("../../outside", str(tmp_path / "outside")):
        (probe_set / "probes.json").write_text(json.dumps({"probes": {bad: "planted"}, "kinds": {bad: "masked"}}))
        with pytest.raises(DamagedFileError, match=r"probes\.json: field 'probes\..*not a name"):
            load_probe_set(probe_set, backbone=minilm.backbone)
    (probe_set / "probes.json").write_text(json.dumps({**listing, "kinds": {"00": "pickle"}}))
    with pytest.raises(DamagedFileError, match=r"probes\.json: field 'kinds\.00'"):
        load_probe_set(probe_set, backbone=minilm.backbone)


# ------------------------------------------------------------------------------------- 12: backbone="" is no name
def test_item12_an_empty_backbone_is_an_error_not_minilm(minilm, tmp_path):
    from kadapter import KAdapterModel
    from kadapter.backbone import load_backbone
    from kadapter.pipeline import parse_override

    assert parse_override("04_lama_probing.backbone=") == ("04_lama_probing", "backbone", "")
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="names no backbone"):
            load_backbone(empty)
        with pytest.raises(ValueError, match="names no backbone"):
            KAdapterModel.from_backbone(empty)
    saved = minilm.save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="names no backbone"):
        KAdapterModel.from_pretrained(saved, backbone="")


# --------------------------------------------------------------------------- 16, 17: converting the Gemma alias
def _fake_convert(package, folder: Path) -> None:
    """What the real conversion leaves (config, safetensors weights written by safetensors itself, tokenizer),
    small; the real one dequantises a 253 MB GGUF in about 2 minutes."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file({"embed.weight": torch.randn(64, 8)}, str(folder / "model.safetensors"))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_text("{}\n")


@pytest.fixture
def fake_gemma(monkeypatch):
    from kadapter import aliases

    monkeypatch.setattr(aliases, "_convert", _fake_convert)
    monkeypatch.setattr(aliases, "gemma_package", lambda: object())
    return aliases


KILLED_CONVERSION = """
import sys, time
from pathlib import Path
from kadapter import aliases

def convert(package, folder):
    (folder / "model.safetensors").write_bytes(b"0" * 100_000)  # half-way through the 1 GB
    print("converting", flush=True)
    time.sleep(600)

aliases._convert, aliases.gemma_package = convert, lambda: None
aliases.gemma_270m_path(Path(sys.argv[1]))
"""


def test_item16_a_killed_conversions_temp_folder_is_removed_by_the_next(fake_gemma, tmp_path):
    import subprocess
    import sys

    root = tmp_path / "backbones"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CONVERSION, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        lines = iter(proc.stdout.readline, "")  # the kit's own log lines come first
        assert any(line.strip() == "converting" for line in lines)
    finally:
        proc.kill()
        proc.wait()
    left = [p for p in root.iterdir()]
    assert len(left) == 1 and left[0].name.startswith(".gemma-3-270m.tmp")  # what the kill left behind
    final = fake_gemma.gemma_270m_path(root)
    assert [p.name for p in root.iterdir()] == ["gemma-3-270m"] and final == root / "gemma-3-270m"


@pytest.mark.parametrize("damage", ["weights missing", "weights cut short"])
def test_item16_a_partial_final_folder_is_detected_and_replaced(fake_gemma, tmp_path, damage):
    from kadapter.safe_files import load_safetensors

    root = tmp_path / "backbones"
    final = root / "gemma-3-270m"
    final.mkdir(parents=True)
    _fake_convert(None, final)
    weights = final / "model.safetensors"
    if damage == "weights missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:-100])
    assert fake_gemma.gemma_270m_path(root) == final
    assert load_safetensors(weights)[0]["embed.weight"].shape == (64, 8)
    assert [p.name for p in root.iterdir()] == ["gemma-3-270m"]


def test_item16_an_unusable_backbone_folder_names_the_variable_and_the_alias(fake_gemma, tmp_path, monkeypatch):
    not_a_folder = tmp_path / "backbones"
    not_a_folder.write_text("a file, not a folder\n")
    monkeypatch.setenv("KADAPTER_BACKBONES", str(not_a_folder))
    with pytest.raises(OSError, match=r"'gemma-3-270m'.*KADAPTER_BACKBONES"):
        fake_gemma.resolve_backbone("gemma-3-270m")
    monkeypatch.setenv("KADAPTER_BACKBONES", str(not_a_folder / "below"))
    with pytest.raises(OSError, match=r"'gemma-3-270m'.*KADAPTER_BACKBONES"):
        fake_gemma.resolve_backbone("gemma-3-270m")


@pytest.fixture
def umask_022():
    import os

    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): oct(p.stat().st_mode & 0o777) for p in sorted(folder.rglob("*"))}


def test_item17_the_converted_gemma_folder_is_readable_by_other_users(fake_gemma, tmp_path, umask_022):
    final = fake_gemma.gemma_270m_path(tmp_path / "backbones")
    modes = _modes(final)
    assert modes == {name: "0o644" for name in modes} and oct(final.stat().st_mode & 0o777) == "0o755"


@pytest.mark.parametrize("mask, file_mode", [(0o022, "0o644"), (0o002, "0o664")])
def test_item17_every_file_the_kit_writes_follows_the_umask(minilm_path, tmp_path, mask, file_mode):
    import os

    import torch

    from kadapter import AdapterConfig, KAdapterModel
    from kadapter.probing.features import save_probe

    old = os.umask(mask)
    try:
        model = KAdapterModel.from_backbone(minilm_path, adapters={"factual": AdapterConfig(**TINY)})
        model.set_backbone_trainable(True)  # the fine-tuned backbone is saved too (Hugging Face's save_pretrained)
        model.save_pretrained(tmp_path / "model")
        save_probe(torch.nn.Linear(2, 2), tmp_path / "probe", {"backbone": {}})
    finally:
        os.umask(old)
    modes = {**_modes(tmp_path / "model"), **_modes(tmp_path / "probe")}
    files = {name: mode for name, mode in modes.items() if "." in Path(name).name}
    assert {"adapters/factual/adapter.safetensors", "fusion.safetensors", "backbone/model.safetensors",
            "probe.safetensors"} <= set(files)
    assert files == {name: file_mode for name in files}


# ------------------------------------------------------------------------ 18: the alias, not this cache's path
def test_item18_a_model_on_the_alias_records_it_and_loads_under_another_cache_root(minilm_path, tmp_path,
                                                                                   monkeypatch):
    """The alias's converted folder is stood in for by links to MiniLM's files (the alias is what is tested, not
    Gemma): saved under one cache root, loaded under another."""
    from kadapter import AdapterConfig, KAdapterModel
    from kadapter.probing import load_probe_set

    def cache_root(name: str) -> Path:
        folder = tmp_path / name / "gemma-3-270m"
        folder.mkdir(parents=True)
        for item in Path(minilm_path).iterdir():
            if item.is_file():
                (folder / item.name).symlink_to(item)
        return folder.parent

    monkeypatch.setenv("KADAPTER_BACKBONES", str(cache_root("alice")))
    model = KAdapterModel.from_backbone("gemma-3-270m", adapters={"factual": AdapterConfig(**TINY)})
    assert model.identity.name_or_path == "gemma-3-270m"
    saved = model.save_pretrained(tmp_path / "saved")
    probe_set = _probe_set(model, tmp_path / "probe_set")
    recorded = [json.loads((saved / "kadapter_config.json").read_text())["backbone"]["name_or_path"],
                json.loads((saved / "adapters" / "factual" / "adapter_config.json").read_text())["backbone"]
                ["name_or_path"],
                json.loads((probe_set / "probes" / "00" / "probe_config.json").read_text())["backbone"]
                ["name_or_path"]]
    assert recorded == ["gemma-3-270m"] * 3
    shutil.rmtree(tmp_path / "alice")
    monkeypatch.setenv("KADAPTER_BACKBONES", str(cache_root("bob")))
    again = KAdapterModel.from_pretrained(saved)
    assert again.identity == model.identity and again.adapter_names == ["factual"]
    loaded, probes = load_probe_set(probe_set)
    assert loaded.identity == model.identity and len(probes) == 2


# ------------------------------------------------------------------- 20: an interrupted rehearsal checkpoint
@pytest.fixture(scope="module")
def rehearsal_text():
    from kadapter.rehearsal import training_text

    return training_text(2000)


ROBERTA_TINY = dict(vocab_size=1500, num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                    intermediate_size=64)


def test_item20_an_interrupted_overwrite_is_never_trusted(rehearsal_text, tmp_path, monkeypatch, umask_022):
    from transformers import RobertaForMaskedLM

    from kadapter.rehearsal import write_checkpoint
    from kadapter.safe_files import load_safetensors

    folder = write_checkpoint(tmp_path / "ckpt", "narrow", texts=rehearsal_text, **ROBERTA_TINY)
    good = load_safetensors(folder / "model.safetensors")[0]
    real_save = RobertaForMaskedLM.save_pretrained

    def killed_while_saving(self, directory, **kwargs):
        real_save(self, directory, **kwargs)
        weights = Path(directory) / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        raise KeyboardInterrupt  # the process is killed half-way through the weights

    monkeypatch.setattr(RobertaForMaskedLM, "save_pretrained", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(folder, "narrow", texts=rehearsal_text, overwrite=True, **ROBERTA_TINY)
    monkeypatch.setattr(RobertaForMaskedLM, "save_pretrained", real_save)
    write_checkpoint(folder, "narrow", texts=rehearsal_text, **ROBERTA_TINY)  # the next call: rewrites it
    again = load_safetensors(folder / "model.safetensors")[0]
    assert again.keys() == good.keys() and all((again[k] == good[k]).all() for k in good)
    assert _modes(folder)["model.safetensors"] == "0o644"  # item 17: Hugging Face's weights file, readable


# ------------------------------------------------------------------------------ 22: odd LAMA facts are skipped
def _lama_copy(data_root: Path, tmp: Path) -> Path:
    """P19 (first 12 facts; one subject holding [MASK], one line repeated) and P36 (its template given two [Y])."""
    folder = tmp / "TREx_lms_vocab"
    folder.mkdir()
    lines = (data_root / "lama" / "TREx_lms_vocab" / "P19.jsonl").read_text().splitlines()[:12]
    odd = json.loads(lines[3])
    lines[3] = json.dumps({**odd, "sub_label": odd["sub_label"] + " [MASK]"})
    (folder / "P19.jsonl").write_text("\n".join(lines + [lines[5]]) + "\n")
    shutil.copy(data_root / "lama" / "TREx_lms_vocab" / "P36.jsonl", folder / "P36.jsonl")
    relations = (data_root / "lama" / "relations.jsonl").read_text().splitlines()
    for i, line in enumerate(relations):
        record = json.loads(line)
        if record["relation"] == "P36":
            relations[i] = json.dumps({**record, "template": record["template"] + " ([Y])"})
    (tmp / "relations.jsonl").write_text("\n".join(relations) + "\n")
    return folder


def test_item22_odd_facts_and_templates_are_counted_skips_and_a_repeated_uuid_scored_once(minilm, data_root,
                                                                                            tmp_path):
    from data_prep.lama import load_trex_facts
    from kadapter.probing.masked import build_probe
    from kadapter.probing.recipes import probe_recipe

    folder = _lama_copy(data_root, tmp_path)
    n_p36 = len((folder / "P36.jsonl").read_text().splitlines())
    facts, report = load_trex_facts(directory=folder, relations_path=tmp_path / "relations.jsonl")
    assert len(facts) == 11 and len({f["uuid"] for f in facts}) == 11 and {f["relation"] for f in facts} == {"P19"}
    skipped = report.to_dict()["skipped"]
    assert skipped == {"template without exactly one [X] and one [Y]": n_p36, "subject contains [MASK]": 1,
                       "a uuid seen before: the same fact is scored once": 1}
    assert report.examples["subject contains [MASK]"] == ["P19.jsonl:4"]
    result = probe_recipe(minilm).lama_probe(minilm, {"backbone": build_probe(minilm, [], seed=0)}, facts)
    assert result["facts"]["total"] <= 11 and result["models"]["backbone"]["macro"]["p@1"] >= 0


# ------------------------------------------------------------------------- 25: a lone surrogate in OpenEntity
def test_item25_a_lone_surrogate_in_openentity_is_an_error_naming_file_and_line(data_root, tmp_path):
    from data_prep.eval_sets import read_openentity
    from data_prep.lama import load_relations
    from data_prep.report import DataFormatError

    source = data_root / "entity_typing_openentity" / "ernie_format"
    shutil.copy(source / "tags.txt", tmp_path / "tags.txt")
    records = json.loads((source / "dev.json").read_text())
    records[7]["sent"] = "\ud800" + records[7]["sent"]
    # one record per line, so the error's line is the record's
    (tmp_path / "dev.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    with pytest.raises(DataFormatError, match=r"dev\.json, line 9: field 'sent': record 7: a lone surrogate"):
        read_openentity(tmp_path / "dev.json")
    relations = (data_root / "lama" / "relations.jsonl").read_text().splitlines()
    relations[2] = relations[2].replace('"label": "', '"label": "\\udc80', 1)
    (tmp_path / "relations.jsonl").write_text("\n".join(relations) + "\n")
    with pytest.raises(DataFormatError, match=r"relations\.jsonl, line 3: field 'label': a lone surrogate"):
        load_relations(tmp_path / "relations.jsonl")
