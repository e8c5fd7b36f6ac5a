"""notebooks/01_data_alignment.ipynb runs headless with papermill on smoke parameters and writes sane results."""
import json
from pathlib import Path

import nbformat
import papermill
import pytest
from datasets import load_from_disk

from kadapter.notebook_run import execute_notebook
from notebook_fixtures import NOTEBOOK_CELL_TIMEOUT

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_data_alignment.ipynb"

#: The smoke parameters (the pipeline's "smoke" profile uses the same sizes).
SMOKE = {"limit": 25, "min_examples": 20, "alignment_docs": 40, "spacy_sentences": 120, "arc_examples": 1}


def test_notebook_declares_its_parameters():
    declared = papermill.inspect_notebook(str(NOTEBOOK))
    assert set(SMOKE) | {"output_dir", "sources", "seed", "hold_out_probe", "ud_split"} <= set(declared)
    # FewRel val_wiki is an evaluation set: never a default knowledge source
    assert "fewrel" not in declared["sources"]["default"]


@pytest.mark.notebook
def test_data_alignment_notebook_smoke(tmp_path):
    out = tmp_path / "out"
    executed = tmp_path / "01_data_alignment.ipynb"
    execute_notebook(str(NOTEBOOK), str(executed), parameters={"output_dir": str(out), **SMOKE},
                     cwd=str(NOTEBOOK.parent), execution_timeout=NOTEBOOK_CELL_TIMEOUT)
    results = json.loads((out / "results.json").read_text())

    aligner = results["aligner"]
    assert aligner["documents"] == 40
    for level in ("mention", "example"):
        for metric in ("precision", "recall"):
            assert 0.9 < aligner[level][metric] <= 1.0, (level, metric)
            assert 0.0 <= aligner["label_only"][level][metric] <= 1.0
    # one name per entity finds fewer gold mentions than label + aliases
    assert aligner["label_only"]["mention"]["recall"] < aligner["mention"]["recall"]

    built = results["pretraining_set"]
    assert set(built["collected_per_source"]) == {"lama_trex_evidence", "redocred_dev", "redocred_test"}
    assert all(n > 0 for n in built["collected_per_source"].values())
    assert built["train"] > 0 and built["dev"] > 0 and built["relations_kept"] > 0
    assert built["steps"][-1]["left"] == built["train"] + built["dev"]
    assert sum(built["train_per_source"].values()) == built["train"]
    dataset = load_from_disk(built["path"])
    assert (len(dataset["train"]), len(dataset["dev"])) == (built["train"], built["dev"])
    assert json.loads((Path(built["path"]) / "factual_stats.json").read_text())["train"] == built["train"]

    holdout = results["lama_holdout"]
    assert holdout["enabled"] and holdout["probe_facts"] == 29411
    assert 0 < holdout["examples_removed"] < sum(built["collected_per_source"].values())
    assert results["eval_overlap"]["eval_sets"] == ["fewrel_val_wiki", "semeval2010_test", "semeval2010_train"]

    dependency = results["dependency"]
    assert dependency["n_sentences"] == 120 and dependency["ud_sentences"] == 2001
    assert 0.0 <= dependency["uas"] <= 1.0 and dependency["by_relation"][0]["relation"] in {"case", "punct", "nmod"}

    assert results["eval_sets"]["semeval2010_train"] == 8000 and results["eval_sets"]["fewrel_val_wiki"] == 11200
    reports = results["skip_reports"]
    assert {"lama_trex_evidence", "redocred_dev", "ud_ewt_dev", "semeval2010_test"} <= set(reports)
    assert all({"kept", "skipped", "examples"} <= set(r) for r in reports.values())

    # the figures were drawn: a relation-frequency bar chart and one dependency-arc figure
    nb = nbformat.read(executed, as_version=4)
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 2
    arcs = figures[1]["data"]["application/vnd.plotly.v1+json"]
    assert len(arcs["layout"]["shapes"]) == 2 * len(arcs["data"][-1]["x"][1:])  # gold + spaCy arc per word


def test_dependency_arcs_figure_colours_disagreements():
    from kadapter.plotting import dependency_arcs_figure

    words = "The cat sat on the mat .".split()
    gold, spacy = [2, 3, 0, 6, 6, 3, 3], [2, 3, 0, 3, 6, 4, 3]
    fig = dependency_arcs_figure(words, gold, spacy)
    assert fig.layout.title.text == "gold (UD) above, spaCy below: 5/7 heads agree"
    above, below = fig.layout.shapes[:7], fig.layout.shapes[7:]
    assert {s.line.color for s in above} == {"royalblue"}
    assert [s.line.color for s in below] == ["crimson" if g != p else "seagreen" for g, p in zip(gold, spacy)]
    # "on" (word 4): gold arc from "mat" (x=6) above the words, spaCy's from "sat" (x=3) below
    assert above[3].path.startswith("M 6,0.3 ") and above[3].path.endswith(" 4,0.3")
    assert below[3].path.startswith("M 3,-0.3 ") and below[3].path.endswith(" 4,-0.3")
    assert len(dependency_arcs_figure(words, gold).layout.shapes) == 7
    with pytest.raises(ValueError, match="7 words but 6 heads"):
        dependency_arcs_figure(words, gold[:6])


def test_relation_frequency_figure_orders_by_count():
    from kadapter.plotting import relation_frequency_figure

    per_relation = {"P19": {"name": "place of birth", "train": 90, "dev": 10},
                    "P20": {"name": "place of death", "train": 300, "dev": 30},
                    "P27": {"name": "citizenship", "train": 50, "dev": 5}}
    fig = relation_frequency_figure(per_relation, min_examples=50, top=2)
    train, dev = fig.data
    assert list(train.x) == ["P20 place of death", "P19 place of birth"] and list(train.y) == [300, 90]
    assert list(dev.y) == [30, 10] and fig.layout.shapes[0].y0 == 50
