"""Every figure of the book reads at the book's width: its smallest text is about 8 pt or more
once the page has scaled the image to the text column.

Two facts give that, each read where it is decided:
- the figure code (the report modules, read as source): the smallest font size it asks for;
- the committed outputs: each figure's width in pixels and its dpi, from the PNG itself. The page
  shows an image at its own size up to the column's width (COLUMN_PX, measured by
  tests/test_site.py), and shrinks a wider one to fit.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURE_CODE = ["reporting.py", "data_report.py", "flat_minima_report.py", "sam_report.py",
               "lottery_report.py", "cofi_report.py", "quantization_report.py", "squad_report.py",
               "compressibility_report.py"]
COLUMN_PX = 676           # the book's text column in a 1280 px window (CSS px)
SMALLEST_PT = 7.5         # "about 8 pt"
SIZE_KEYWORDS = {"fontsize", "labelsize", "title_fontsize", "size"}


def _package_file(name: str) -> Path:
    found = sorted((ROOT / "flatcomp").rglob(name))
    assert found, f"no {name} under flatcomp/"
    return found[0]


def module_constants(path: Path) -> dict[str, object]:
    """NAME = literal assignments at a module's top level."""
    return {t.id: n.value.value for n in ast.parse(path.read_text()).body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets if isinstance(t, ast.Name)}


def font_sizes(path: Path, shared: dict | None = None) -> list[tuple[int, float]]:
    """(line, points) of every font size the file asks for. A size must be a number, or a module
    constant of the file or of ``shared`` (the constants it imports); anything else (a name
    such as 'small', a variable) cannot be checked and fails here."""
    tree = ast.parse(path.read_text())
    constants = {**(shared or {}), **module_constants(path)}
    sizes = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg not in SIZE_KEYWORDS:
                continue
            value = keyword.value
            if isinstance(value, ast.Constant) and isinstance(value.value, (int, float)):
                sizes.append((node.lineno, float(value.value)))
            elif isinstance(value, ast.Name) and isinstance(constants.get(value.id), (int, float)):
                sizes.append((node.lineno, float(constants[value.id])))
            else:
                raise AssertionError(f"{path.name}:{node.lineno}: {keyword.arg}= is not a number "
                                     "the check can read")
    return sizes


def png_size(data: bytes) -> tuple[int, float]:
    """(width in pixels, dots per inch) of a PNG: IHDR's width, pHYs's density (72 without)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, dpi, at = struct.unpack(">I", data[16:20])[0], 72.0, 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"pHYs":
            per_unit, _, unit = struct.unpack(">IIB", data[at + 8:at + 17])
            dpi = per_unit * 0.0254 if unit == 1 else dpi
        if kind in (b"pHYs", b"IDAT"):
            break
        at += 12 + length
    return width, dpi


def shown_points(font_pt: float, width_px: int, dpi: float) -> float:
    """The size a reader sees, in CSS points (96 px per inch), of ``font_pt`` text drawn at
    ``dpi`` in an image ``width_px`` wide, once the column has scaled it to fit."""
    return font_pt * (dpi / 96) * min(1.0, COLUMN_PX / width_px)


def book_figures() -> list[tuple[str, int, bytes]]:
    """(notebook, cell index, PNG bytes) of every figure in the committed outputs."""
    found = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            for output in cell.get("outputs", []):
                if "image/png" in output.get("data", {}):
                    found.append((path.name, i, base64.b64decode(output["data"]["image/png"])))
    return found


@functools.cache
def smallest_font() -> tuple[float, str]:
    shared = module_constants(_package_file("reporting.py"))   # SMALL, imported by the reports
    sizes = [(pt, f"{name}:{line}") for name in FIGURE_CODE
             for line, pt in font_sizes(_package_file(name), shared)]
    return min(sizes)


def test_the_figure_code_asks_for_no_text_under_8_pt():
    pt, where = smallest_font()
    assert pt >= 8, f"{where} asks for {pt:g} pt text"


FIGURES = book_figures()


@pytest.mark.parametrize("notebook, cell, png", FIGURES,
                         ids=[f"{n}-cell{c}" for n, c, _ in FIGURES])
def test_every_figure_reads_at_the_book_width(notebook, cell, png):
    pt, where = smallest_font()
    width, dpi = png_size(png)
    seen = shown_points(pt, width, dpi)
    assert seen >= SMALLEST_PT, (
        f"{notebook}, cell {cell}: {width} px at {dpi:.0f} dpi is shown at "
        f"{min(1, COLUMN_PX / width):.2f} of its size, so {pt:g} pt text ({where}) reads as "
        f"{seen:.1f} pt: make the figure at most {COLUMN_PX / dpi:.1f} inches wide")


def test_the_check_reads_sizes_and_fails_small_text(tmp_path):
    assert shown_points(8, 676, 100) == pytest.approx(8 * 100 / 96)
    assert shown_points(8, 1352, 100) < SMALLEST_PT      # an 11-inch figure halves its text
    code = tmp_path / "f.py"
    code.write_text("SMALL = 8\nax.legend(fontsize=SMALL)\nax.annotate('x', fontsize=6)\n")
    assert sorted(pt for _, pt in font_sizes(code)) == [6.0, 8.0]
    code.write_text("ax.legend(fontsize='small')\n")
    with pytest.raises(AssertionError, match="not a number"):
        font_sizes(code)
    import matplotlib
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(6.7, 2))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    assert png_size(buffer.getvalue()) == (670, pytest.approx(100, abs=0.1))
    assert book_figures(), "no figure found in the committed outputs"
