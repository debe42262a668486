"""What each cell type looks like on a May-Grünwald-Giemsa smear of adult peripheral blood.

Written once here for every page (Classify's card, the quiz's hints and feedback). Sizes are cell
diameters on a dried, stained film; normal shares are of the white-cell differential in adults.

A card's `display_name` is the name training writes into a model's model.json; the pages show a
model's classes by the names its model.json gives (`Classifier.display_names`), so a cell has one
name everywhere. Another name students meet (`also_called`) is shown beside it, never instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MorphologyCard:
    cell: str  # class key, lower-case, e.g. "eosinophil"
    display_name: str
    size: str  # diameter on a stained film, e.g. "12-17 µm"
    nucleus: str
    cytoplasm: str
    granules: str
    normal_share: str  # share of white cells in adult blood (or what is normal, for non-leukocytes)
    key_features: tuple[str, ...]  # 2-3 short features: the quiz hint
    look_alikes: dict[str, str] = field(default_factory=dict)  # other class -> how to tell apart
    also_called: str = ""  # another name for the cell, for a caption ("a nucleated red cell")


CARDS: dict[str, MorphologyCard] = {card.cell: card for card in (
    MorphologyCard(
        cell="neutrophil",
        display_name="Neutrophil",
        size="12-15 µm",
        nucleus="2-5 lobes joined by thin chromatin strands; coarse, clumped chromatin",
        cytoplasm="Abundant, pale pink to lilac",
        granules="Fine, evenly spread, lilac (neutral-staining) specific granules",
        normal_share="40-75% of white cells (2.0-7.5 × 10⁹/L)",
        key_features=("Segmented nucleus with 2-5 lobes",
                      "Pale pink cytoplasm with fine lilac granules"),
        look_alikes={
            "ig": "A neutrophil's nucleus is segmented into lobes joined by thin strands; a "
                  "metamyelocyte or band has a single kidney- or U-shaped nucleus with finer "
                  "chromatin, and earlier stages have bluer cytoplasm.",
            "eosinophil": "Neutrophil granules are fine and lilac, barely visible; an "
                          "eosinophil is packed with large orange-red granules and usually has "
                          "just two lobes.",
            "monocyte": "A neutrophil's nucleus is split into separate lobes with dense "
                        "chromatin; a monocyte's is one folded, kidney-shaped mass with lacy "
                        "chromatin in grey-blue cytoplasm.",
        },
    ),
    MorphologyCard(
        cell="eosinophil",
        display_name="Eosinophil",
        size="12-17 µm",
        nucleus="Usually two lobes ('spectacles'), dense chromatin",
        cytoplasm="Filled by granules; pale where visible",
        granules="Large, round, uniform, refractile orange-red (eosinophilic) granules",
        normal_share="1-4% of white cells (0.04-0.4 × 10⁹/L)",
        key_features=("Cytoplasm packed with large orange-red granules",
                      "Bilobed, spectacle-like nucleus"),
        look_alikes={
            "neutrophil": "Eosinophil granules are large, round and orange-red and fill the cell; "
                          "neutrophil granules are fine and lilac, and its nucleus has more lobes.",
            "basophil": "Eosinophil granules are orange-red and sit beside a visible bilobed "
                        "nucleus; basophil granules are dark purple-black and lie over the "
                        "nucleus, hiding it.",
            "ig": "An eosinophil has a mature bilobed nucleus and orange-red granules; an immature "
                  "granulocyte has a round or indented nucleus and purple (azurophilic) or lilac "
                  "granules in bluer cytoplasm.",
        },
    ),
    MorphologyCard(
        cell="basophil",
        display_name="Basophil",
        size="10-14 µm",
        nucleus="Bilobed or irregular, often hidden under the granules",
        cytoplasm="Pale lilac where visible, mostly covered by granules",
        granules="Large, coarse, unevenly sized dark purple to blue-black granules over the "
                 "nucleus",
        normal_share="0-1% of white cells (up to 0.1 × 10⁹/L)",
        key_features=("Coarse dark purple-black granules",
                      "Granules lie over and obscure the nucleus"),
        look_alikes={
            "eosinophil": "Basophil granules are dark purple-black, uneven and cover the nucleus; "
                          "eosinophil granules are uniform orange-red beside a visible nucleus.",
            "ig": "A basophil's granules are blue-black and coarse over a condensed nucleus; a "
                  "promyelocyte's azurophilic granules are red-purple, in blue cytoplasm around a "
                  "large round nucleus with finer chromatin and often a nucleolus.",
            "lymphocyte": "A basophil is granular throughout; a lymphocyte has a round dense "
                          "nucleus with a thin rim of clear sky-blue cytoplasm and few or no "
                          "granules.",
        },
    ),
    MorphologyCard(
        cell="lymphocyte",
        display_name="Lymphocyte",
        size="7-10 µm (small); up to 15 µm (large)",
        nucleus="Round or slightly indented, dense clumped chromatin, fills most of the cell",
        cytoplasm="Scanty, clear sky-blue rim (more abundant in large lymphocytes)",
        granules="None, or a few azurophilic granules in large granular lymphocytes",
        normal_share="20-40% of white cells (1.5-4.0 × 10⁹/L)",
        key_features=("Small round cell, about the size of a red cell",
                      "Round dense nucleus with a thin rim of sky-blue cytoplasm"),
        look_alikes={
            "monocyte": "A lymphocyte is small with a round, dense nucleus and scanty clear "
                        "blue cytoplasm; a monocyte is larger, with a folded nucleus, lacy "
                        "chromatin and abundant grey-blue, often vacuolated cytoplasm.",
            "erythroblast": "A lymphocyte's chromatin is clumped but not solid and its cytoplasm "
                            "is sky-blue; an erythroblast's nucleus is a very dense, ink-dot-like "
                            "sphere, often eccentric, in grey to pink (haemoglobinised) cytoplasm.",
            "basophil": "A lymphocyte has clear cytoplasm and a sharply outlined round nucleus; a "
                        "basophil's nucleus is hidden by coarse dark granules.",
        },
    ),
    MorphologyCard(
        cell="monocyte",
        display_name="Monocyte",
        size="15-20 µm (the largest normal white cell)",
        nucleus="Folded, kidney- or horseshoe-shaped, lacy (fine) chromatin",
        cytoplasm="Abundant, grey-blue 'ground glass', often with vacuoles",
        granules="Very fine azurophilic 'dust'",
        normal_share="2-10% of white cells (0.2-0.8 × 10⁹/L)",
        key_features=("Largest normal white cell",
                      "Folded kidney-shaped nucleus with lacy chromatin",
                      "Grey-blue cytoplasm, often vacuolated"),
        look_alikes={
            "lymphocyte": "A monocyte is larger with a folded nucleus, lacy chromatin and "
                          "abundant grey-blue cytoplasm; a lymphocyte is small with a round dense "
                          "nucleus and a thin blue rim.",
            "ig": "A monocyte's cytoplasm is grey-blue, vacuolated and nearly agranular; a "
                  "myelocyte or metamyelocyte has pinkish granular cytoplasm and a round or "
                  "kidney-shaped nucleus with coarser chromatin.",
            "neutrophil": "A monocyte's nucleus is one folded mass with lacy chromatin; a "
                          "neutrophil's is split into dense lobes, in pink cytoplasm.",
        },
    ),
    MorphologyCard(
        cell="ig",
        display_name="Immature granulocyte",
        size="12-20 µm (promyelocytes up to 25 µm)",
        nucleus="Round or oval (promyelocyte, myelocyte) to kidney-shaped (metamyelocyte); "
                "chromatin finer than a neutrophil's, nucleolus possible in promyelocytes",
        cytoplasm="Blue in early stages, turning pinkish as the cell matures",
        granules="Red-purple primary (azurophilic) granules in promyelocytes; lilac specific "
                 "granules from the myelocyte on",
        normal_share="Normally absent (under 1%); seen in infection, pregnancy, marrow stress",
        key_features=("Round, oval or kidney-shaped nucleus, not segmented",
                      "Granular cytoplasm, bluer than a neutrophil's"),
        look_alikes={
            "neutrophil": "An immature granulocyte's nucleus is round, oval or kidney-shaped with "
                          "finer chromatin, not split into lobes, and its cytoplasm is bluer.",
            "monocyte": "An immature granulocyte has distinct granules (purple or lilac) and a "
                        "smoother round or kidney-shaped nucleus; a monocyte has grey-blue "
                        "vacuolated cytoplasm with only fine dust and a folded, lacy nucleus.",
            "basophil": "An immature granulocyte's granules are red-purple or lilac and do not "
                        "hide its large round nucleus; a basophil's blue-black granules cover a "
                        "condensed nucleus.",
        },
    ),
    MorphologyCard(
        cell="erythroblast",
        display_name="Erythroblast",
        size="8-12 µm (late, orthochromatic stage)",
        nucleus="Small, perfectly round, very dense (pyknotic), often eccentric",
        cytoplasm="Grey-blue (polychromatic) to pink like red cells (orthochromatic)",
        granules="None",
        normal_share="Absent in adult blood (normal only in newborns); counted per 100 white cells",
        key_features=("Small, very dense, round nucleus",
                      "Agranular cytoplasm the colour of red cells"),
        look_alikes={
            "lymphocyte": "An erythroblast's nucleus is smaller, ink-dense and often "
                          "off-centre, in pink-grey agranular cytoplasm; a lymphocyte has clumped "
                          "chromatin and sky-blue cytoplasm.",
            "platelet": "An erythroblast is cell-sized with a true nucleus; a platelet is a small "
                        "(2-3 µm) anucleate fragment whose purple granules can mimic a nucleus.",
        },
        also_called="a nucleated red cell (NRBC)",
    ),
    MorphologyCard(
        cell="platelet",
        display_name="Platelet",
        size="1.5-3 µm (giant platelets larger)",
        nucleus="None (a cell fragment)",
        cytoplasm="Pale blue-grey outer zone",
        granules="Fine purple-red granules gathered in the centre",
        normal_share="Not a white cell: 150-400 × 10⁹/L in adult blood",
        key_features=("Tiny anucleate fragment, much smaller than a red cell",
                      "Purple granules in a pale blue-grey body"),
        look_alikes={
            "erythroblast": "A platelet is a tiny anucleate fragment with central granules; an "
                            "erythroblast is red-cell-sized or larger with a dense round nucleus.",
            "basophil": "A platelet clump can look granular, but it has no nucleus and no "
                        "cell outline; a basophil is a 10-14 µm cell with a nucleus under its "
                        "granules.",
        },
    ),
)}

# Other spellings of class keys found in public datasets and model.json files.
ALIASES = {
    "immature granulocyte": "ig",
    "immature granulocytes": "ig",
    "immature_granulocyte": "ig",
    "nrbc": "erythroblast",
    "nucleated red blood cell": "erythroblast",
    "thrombocyte": "platelet",
}


def _key(class_name: str) -> str:
    key = class_name.strip().lower()
    if key.endswith("s") and key[:-1] in CARDS:  # "EOSINOPHILS", "platelets"
        key = key[:-1]
    return ALIASES.get(key, key)


def card_for(class_name: str) -> MorphologyCard | None:
    """The morphology card for a class key or display name (any case), or None if unknown."""
    return CARDS.get(_key(class_name))


def also_called(class_name: str, name: str) -> str:
    """"Erythroblast: also called a nucleated red cell (NRBC)." for a caption under `name`, the
    class's shown name; "" when its card gives no other name."""
    card = card_for(class_name)
    return f"{name}: also called {card.also_called}." if card and card.also_called else ""


def with_article(name: str) -> str:
    """"an Eosinophil", "an Immature granulocyte", "a Neutrophil": the article a cell name takes
    (by its first letter, which is right for every cell name here)."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def contrast(answer: str, truth: str) -> str:
    """One line on what separates a student's `answer` from the true class `truth`."""
    answer_card, truth_card = card_for(answer), card_for(truth)
    if truth_card is None:
        return f"No morphology notes for '{truth}'."
    if answer_card is None:
        return f"This is {with_article(truth_card.display_name.lower())}: " \
               f"{'; '.join(truth_card.key_features).lower()}."
    if answer_card.cell == truth_card.cell:
        return f"Correct: {'; '.join(truth_card.key_features).lower()}."
    # Prefer the note written from the true cell's side ("a lymphocyte is ..., a monocyte is ...").
    note = (truth_card.look_alikes.get(answer_card.cell)
            or answer_card.look_alikes.get(truth_card.cell))
    if note:
        return note
    return (f"{truth_card.display_name}: {truth_card.nucleus.lower()}; "
            f"{truth_card.granules.lower()}. {answer_card.display_name}: "
            f"{answer_card.nucleus.lower()}; {answer_card.granules.lower()}.")
