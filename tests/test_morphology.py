"""Morphology cards: every PBC class has a complete card; look-ups and contrasts behave."""

from __future__ import annotations

import dataclasses

import pytest

from hematovision_core.morphology import CARDS, MorphologyCard, card_for, contrast, with_article

PBC_CLASSES = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte",
               "neutrophil", "platelet"]


@pytest.mark.parametrize("cell", PBC_CLASSES)
def test_every_pbc_class_has_a_complete_card(cell):
    card = card_for(cell)
    assert isinstance(card, MorphologyCard) and card.cell == cell
    for name in ("display_name", "size", "nucleus", "cytoplasm", "granules", "normal_share"):
        assert getattr(card, name).strip()
    assert 2 <= len(card.key_features) <= 3
    assert card.look_alikes and all(other in CARDS and other != cell for other in card.look_alikes)


def test_card_lookup_ignores_case_plurals_and_aliases():
    assert card_for("EOSINOPHIL").cell == "eosinophil"
    assert card_for(" Neutrophils ").cell == "neutrophil"
    assert card_for("Immature granulocyte").cell == "ig"
    assert card_for("unknown cell") is None


def test_cards_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        card_for("monocyte").size = "1 µm"


def test_contrast_uses_look_alikes_in_either_direction():
    line = contrast("monocyte", "lymphocyte")
    assert line == CARDS["lymphocyte"].look_alikes["monocyte"]
    # platelet has no note about lymphocytes, nor lymphocyte about platelets: generic line.
    generic = contrast("platelet", "lymphocyte")
    assert "Lymphocyte" in generic and "Platelet" in generic
    # erythroblast -> platelet note exists only on one side for some pairs
    assert contrast("erythroblast", "platelet") == CARDS["platelet"].look_alikes["erythroblast"]


def test_contrast_for_a_correct_or_unknown_answer():
    assert contrast("eosinophil", "Eosinophil").startswith("Correct")
    assert "basophil" in contrast("no idea", "basophil").lower()
    assert "\n" not in contrast("ig", "neutrophil")


def test_cell_names_take_the_right_article():
    assert with_article("Eosinophil") == "an Eosinophil"
    assert with_article("Immature granulocyte") == "an Immature granulocyte"
    assert with_article("Neutrophil") == "a Neutrophil"
    assert with_article("Basophil") == "a Basophil"


def test_a_cell_has_one_name_and_another_one_only_as_a_caption():
    from hematovision_core.morphology import also_called
    from hematovision_core.train import DISPLAY_NAMES

    # Training writes the cards' names into model.json; the pages show model.json's names.
    assert DISPLAY_NAMES == {cell: card.display_name for cell, card in CARDS.items()}
    assert card_for("erythroblast").display_name == "Erythroblast"
    assert also_called("erythroblast", "Erythroblast") == \
        "Erythroblast: also called a nucleated red cell (NRBC)."
    assert also_called("neutrophil", "Neutrophil") == ""
    assert also_called("unknown cell", "Unknown") == ""
