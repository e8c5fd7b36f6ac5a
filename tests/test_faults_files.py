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
