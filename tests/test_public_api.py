"""The library's public names, importable from the package without the book's machinery."""

import subprocess
import sys

import pytest

import flatcomp


def test_every_public_name_imports_from_the_package_with_its_docstring():
    for name in flatcomp.__all__:
        value = getattr(flatcomp, name)
        assert value.__doc__, name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        flatcomp.nope  # noqa: B018


@pytest.mark.parametrize("statement", [
    "import flatcomp",
    "from flatcomp import SAM, Masker, magnitude_masks, sharpness, quantize_dynamic_int8",
    "import flatcomp.pruning",
    "from flatcomp import fine_tune",
])
def test_the_library_loads_no_transformers_and_no_book_machinery(statement):
    check = (f"{statement}; import sys; heavy = [m for m in sys.modules if m == 'transformers' "
             "or m.startswith('flatcomp.lab')]; print(heavy); assert not heavy")
    subprocess.run([sys.executable, "-c", check], check=True, capture_output=True)
