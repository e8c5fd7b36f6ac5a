"""The adversarial cases of issue 14, each reproduced on real files copied to a temporary folder and broken there.

Every test asserts the clear error (file, and line or field where there is one), the counted skip, or the
recomputation — never a silent wrong result, a bare library error or a hang. Names that are new with the fixes are
imported inside the tests, so each test fails on its own where the fix is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data_prep.report import DataFormatError

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------- loaders: cases 3, 7, 12
def _head_lines(source: Path, target: Path, n: int, *, until_blank: bool = False) -> Path:
    """The first ``n`` lines of a real file (continued to the next blank line when ``until_blank``)."""
    lines = source.read_bytes().split(b"\n")
    end = n
    while until_blank and end < len(lines) and lines[end].strip():
        end += 1
    target.write_bytes(b"\n".join(lines[:end]) + b"\n")
    return target


def _loaders(data_root: Path, tmp: Path):
    """(name, copy of a real file, reader) for every data loader of the project."""
    from data_prep.dependency import read_conllu
    from data_prep.eval_sets import read_cosmosqa, read_fewrel, read_openentity, read_semeval2010, read_tacred
    from data_prep.factual import load_redocred
    from data_prep.lama import load_relations

    def copy(*parts):
        folder = tmp / parts[0]
        folder.mkdir(exist_ok=True)
        return Path(shutil.copy(data_root.joinpath(*parts), folder / parts[-1]))

    return [
        ("lama", copy("lama", "relations.jsonl"), load_relations),
        ("openentity", copy("entity_typing_openentity", "ernie_format", "dev.json"), read_openentity),
        ("tacred", copy("tacred_sample", "dev.json"), read_tacred),
        ("semeval", _head_lines(data_root / "semeval2010_task8" / "SemEval2010_task8_training" / "TRAIN_FILE.TXT",
                                tmp / "TRAIN_FILE.TXT", 40), read_semeval2010),
        ("conllu", _head_lines(data_root / "ud_english_ewt" / "en_ewt-ud-dev.conllu", tmp / "dev.conllu", 60,
                               until_blank=True), read_conllu),
        ("fewrel", copy("fewrel", "val_pubmed.json"), read_fewrel),
        ("cosmosqa", _head_lines(data_root / "qa_cosmosqa" / "valid.csv", tmp / "valid.csv", 20), read_cosmosqa),
        ("redocred", copy("redocred", "dev_revised.json"),
         lambda path: load_redocred(path=path, rel_info_path=data_root / "redocred" / "rel_info.json")),
    ]


LOADERS = ["lama", "openentity", "tacred", "semeval", "conllu", "fewrel", "cosmosqa", "redocred"]


def _loader(name, data_root, tmp_path):
    return next(entry for entry in _loaders(data_root, tmp_path) if entry[0] == name)


@pytest.mark.parametrize("name", LOADERS)
def test_every_loader_reads_its_real_file_copy(name, data_root, tmp_path):
    """The copies the broken-file tests start from are valid: the breakage is what the errors are about."""
    _, path, read = _loader(name, data_root, tmp_path)
    result = read(path)
    records = result[0] if isinstance(result, tuple) else result
    assert len(records) > 0


@pytest.mark.parametrize("name", LOADERS)
@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_case07_an_empty_file_is_an_error_naming_it_in_every_loader(name, content, data_root, tmp_path):
    _, path, read = _loader(name, data_root, tmp_path)
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match="empty file") as error:
        read(path)
    assert error.value.path == str(path)


@pytest.mark.parametrize("name", LOADERS)
def test_case12_a_non_utf8_byte_is_an_error_naming_file_and_line_in_every_loader(name, data_root, tmp_path):
    _, path, read = _loader(name, data_root, tmp_path)
    data = path.read_bytes()
    newlines = [i for i, b in enumerate(data) if b == 0x0A]
    line = min(5, len(newlines))  # break line 6, or the last line of a one-line file
    start = newlines[line - 1] + 1 if line else 0
    if start >= len(data) - 2:  # one-line file ending in a newline
        line, start = 0, 0
    offset = start + 3
    path.write_bytes(data[:offset] + b"\xff" + data[offset + 1:])
    with pytest.raises(DataFormatError, match="not UTF-8") as error:
        read(path)
    assert error.value.path == str(path) and error.value.line == line + 1
    assert "column 4" in str(error.value)


def test_case03_conllu_trees_with_a_cycle_or_two_roots_are_skipped_and_counted(data_root, tmp_path):
    from data_prep.dependency import read_conllu

    source = _head_lines(data_root / "ud_english_ewt" / "en_ewt-ud-dev.conllu", tmp_path / "ok.conllu", 60,
                         until_blank=True)
    good, good_report = read_conllu(source)
    assert good_report.total_skipped == 0
    blocks = source.read_text().strip("\n").split("\n\n")
    assert len(blocks) >= 3

    def set_heads(block: str, heads: dict[int, int]) -> str:
        out = []
        for line in block.split("\n"):
            cols = line.split("\t")
            if len(cols) == 10 and cols[0].isdigit() and int(cols[0]) in heads:
                cols[6] = str(heads[int(cols[0])])
            out.append("\t".join(cols))
        return "\n".join(out)

    # sentence 1 ("From the AP comes this story :"): AP -> story -> AP, a cycle beside the root; sentence 2: a
    # second root; sentence 3: its root hangs under another word (heads 2,3,2,3-like: a cycle and no root)
    root_of = {n: int(line.split("\t")[0]) for n, block in enumerate(blocks)
               for line in block.split("\n") if line.split("\t")[6:7] == ["0"]}
    blocks[0] = set_heads(blocks[0], {3: 6, 6: 3})
    blocks[1] = set_heads(blocks[1], {1: 0})
    blocks[2] = set_heads(blocks[2], {root_of[2]: 1 if root_of[2] != 1 else 2})
    broken = tmp_path / "broken.conllu"
    broken.write_text("\n\n".join(blocks) + "\n\n")
    data, report = read_conllu(broken)
    assert len(data) == len(good) - 3 and report.kept == len(good) - 3
    assert report.skipped == {"not a tree: head cycle": 1, "not a tree: several roots": 1, "not a tree: no root": 1}
    sent_ids = [line.split("= ", 1)[1] for b in blocks[:3] for line in b.split("\n") if line.startswith("# sent_id")]
    cycle = report.examples["not a tree: head cycle"][0]
    roots = report.examples["not a tree: several roots"][0]
    assert cycle.startswith("broken.conllu:5 ") and sent_ids[0] in cycle  # line 5: the sentence's first word
    assert roots.startswith(f"broken.conllu:{blocks[0].count(chr(10)) + 2 + 4} ") and sent_ids[1] in roots
    assert sent_ids[2] in report.examples["not a tree: no root"][0]
    assert not set(sent_ids) & set(data["id"])
