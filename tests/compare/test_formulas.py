import json
from pathlib import Path

import pytest

from ocrtui.compare.formulas import (
    formula_distance,
    formula_regions,
    normalize_formula,
    score_formulas,
)

PAIRS = json.loads(
    (Path(__file__).parent / "data" / "omnidocbench_formula_pairs.json").read_text()
)["pairs"]


@pytest.mark.parametrize("pair", PAIRS, ids=[f"pair{i}" for i in range(len(PAIRS))])
def test_distance_agrees_with_omnidocbench_on_its_published_pairs(pair: dict) -> None:
    got = formula_distance(pair["output"], pair["reference"])
    assert got == pytest.approx(pair["edit_distance"], abs=0.01)


def test_the_pairs_are_not_all_perfect() -> None:
    assert max(p["edit_distance"] for p in PAIRS) > 0.2


def test_normalisation_drops_layout_not_symbols() -> None:
    assert normalize_formula(r"$$ \left( \mathrm{X}_{i} \right) \tag{2} $$") == "({x}_{i})"
    assert normalize_formula(r"\[ a \quad b \]") == "ab"
    assert normalize_formula(r"\alpha") != normalize_formula(r"\beta")


PAGE = r"""# Results

The energy is $E$ and prices are $5 or $6.

$$
E = mc^{2}
$$

\begin{align}
a &= b + c \\
d &= e
\end{align}

\[ \int_0^1 f(x)\,dx \]
"""


def test_display_formulas_are_found_in_order_inline_math_is_not() -> None:
    regions = formula_regions(PAGE)
    assert len(regions) == 3
    assert "mc^{2}" in regions[0] and "align" in regions[1] and "int_0" in regions[2]
    assert formula_regions("no math, $x$ inline only") == []


def test_page_score_pairs_formulas_nearest_first_and_missing_ones_cost_one() -> None:
    same = score_formulas(PAGE, PAGE)
    # found: the 3 display formulas, $E$ and "$5 or $" (prices read as math)
    assert same is not None and same.distance == 0.0 and (same.formulas, same.found) == (3, 5)
    shuffled = "\\[ \\int_0^1 f(x)\\,dx \\]\n\n$$E = mc^{2}$$\n"
    partial = score_formulas(shuffled, PAGE)
    assert partial is not None and partial.found == 2
    assert partial.distance == pytest.approx(1 / 3, abs=0.02)  # the align block is missing
    wrong = score_formulas(PAGE.replace("mc^{2}", "mc^{3}"), PAGE)
    assert wrong is not None and 0 < wrong.distance < 0.1
    assert score_formulas(PAGE, "no formulas here") is None


def test_a_display_formula_set_inline_still_pairs() -> None:
    reference = "Energy:\n\n$$E = mc^{2}$$\n"
    inline = score_formulas("Energy: $E = mc^{2}$ as usual.", reference)
    assert inline is not None and inline.distance == 0.0 and inline.found == 1
    assert formula_regions("$x$ and \\(y\\)", inline=True) == ["$x$", "\\(y\\)"]
