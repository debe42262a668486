"""Synthetic images that pass `load_image`'s checks the way real ones do.

`load_image` refuses images under `MIN_SIDE` pixels a side and blank ones (one flat colour), as a
real upload of an icon or an empty frame should be. Tests that need many distinct images without
the real data draw this stained-cell look-alike instead of a flat colour.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

PALE_FIELD = (235, 220, 225)  # the bright background of a stained smear
RED_CELL = (225, 140, 150)  # pink
NUCLEUS = (110, 60, 160)  # purple-blue


def cell_image(size: tuple[int, int] = (64, 64), background=PALE_FIELD) -> Image.Image:
    """An RGB image of `size`: `background`, two pink red cells in opposite corners and a purple
    nucleus in the centre. Distinct backgrounds give distinct images."""
    width, height = size
    unit = min(width, height)
    image = Image.new("RGB", size, tuple(background))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0, 0, unit // 3, unit // 3), fill=RED_CELL)
    draw.ellipse((width - unit // 3, height - unit // 3, width - 1, height - 1), fill=RED_CELL)
    draw.ellipse((width // 2 - unit // 5, height // 2 - unit // 5,
                  width // 2 + unit // 5, height // 2 + unit // 5), fill=NUCLEUS)
    return image


def quiz_images(data_dir: Path, classes) -> str:
    """Four synthetic images a class under `data_dir/pbc/<class>/` (1 train, 1 val, 2 test) and
    the split manifest (split.csv text) that describes them, for a tiny model that owns them."""
    rows = ["path,label,split,sha1"]
    for i, label in enumerate(classes):
        for j, split in enumerate(["train", "val", "test", "test"]):
            relative = f"{label}/{split}-{j}.png"
            target = Path(data_dir) / "pbc" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            cell_image((64, 64), (60 * i, 40 + 50 * j, 150)).save(target)
            rows.append(f"{relative},{label},{split},x")
    return "\n".join(rows) + "\n"
