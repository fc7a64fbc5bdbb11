from __future__ import annotations

import pytest

from cifake_hub.builders.prompts import TABLE_1, article, prompt_counts, prompt_for
from cifake_hub.schema import CLASS_NAMES, category_index

PAPER_MODIFIERS = {  # Table 1 of the paper, verbatim
    "airplane": "aircraft, airplane, fighter, flying, jet, plane",
    "automobile": "family, new, sports, vintage",
    "bird": "flying, in a tree, indoors, on water, outdoors, walking",
    "cat": "indoors, outdoors, walking, running, eating, jumping, sleeping, sitting",
    "deer": "herd, in a field, in the forest, outdoors, running, wildlife photography",
    "dog": "indoors, outdoors, walking, running, eating, jumping, sleeping, sitting",
    "frog": "European, in the forest, on a tree, on the ground, swimming, tropical, "
    "wildlife photography",
    "horse": "herd, in a field, in the forest, outdoors, running, wildlife photography",
    "ship": "at sea, boat, cargo, cruise, on the water, river, sailboat, tug",
    "truck": "18-wheeler, car transport, fire, garbage, heavy goods, lorry, mining, tanker, tow",
}


def test_table_1_is_complete():
    assert list(TABLE_1) == list(CLASS_NAMES)
    for name, modifiers in PAPER_MODIFIERS.items():
        assert [m for m, _ in TABLE_1[name]] == modifiers.split(", ")


@pytest.mark.parametrize(
    ("category", "index", "prompt"),
    [
        ("truck", 0, "a photograph of an 18-wheeler truck"),
        ("truck", 2, "a photograph of a fire truck"),
        ("bird", 1, "a photograph of a bird in a tree"),
        ("airplane", 0, "a photograph of an aircraft"),
        ("cat", 4, "a photograph of an eating cat"),
        ("frog", 0, "a photograph of a European frog"),
        ("deer", 0, "a photograph of a herd of deer"),
        ("ship", 7, "a photograph of a tugboat"),
    ],
)
def test_prompts_read_as_english(category, index, prompt):
    assert prompt_for(category_index(category), index) == prompt


def test_articles():
    assert [
        article(w)
        for w in ("apple", "European", "18-wheeler", "8-seater", "1-ton", "unicorn", "owl")
    ] == ["an", "a", "an", "an", "a", "a", "an"]


@pytest.mark.parametrize("category", range(10))
def test_modifiers_used_equally(category):
    counts = prompt_counts(category, 6000)
    assert sum(counts.values()) == 6000
    assert len(counts) == len(TABLE_1[CLASS_NAMES[category]])
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(p.startswith("a photograph of ") for p in counts)
