import json
from pathlib import Path

import pytest

from ocrtui.compare.scoring import cer
from ocrtui.compare.tables import parse_tables, score_tables, teds

PAIRS = json.loads((Path(__file__).parent / "data" / "omnidocbench_table_pairs.json").read_text())[
    "pairs"
]


@pytest.mark.parametrize("pair", PAIRS, ids=[f"pair{i}" for i in range(len(PAIRS))])
def test_teds_agrees_with_omnidocbench_on_its_published_pairs(pair: dict) -> None:
    (out,) = parse_tables(pair["output"])
    (ref,) = parse_tables(pair["reference"])
    assert teds(out, ref) == pytest.approx(pair["teds"], abs=0.01)
    assert teds(out, ref, structure_only=True) == pytest.approx(pair["teds_structure"], abs=0.01)


def test_the_pairs_are_not_all_perfect() -> None:
    # The agreement test means something only if the pairs differ.
    assert min(p["teds"] for p in PAIRS) < 0.7


def _grid(rows: int = 12, cols: int = 6) -> list[list[str]]:
    return [[f"r{r}c{c}值{(r * 7 + c) % 10}" for c in range(cols)] for r in range(rows)]


def _markdown(grid: list[list[str]]) -> str:
    width = max(len(r) for r in grid)
    lines = ["| " + " | ".join(grid[0]) + " |", "|" + "---|" * width]
    lines += ["| " + " | ".join(r) + " |" for r in grid[1:]]
    return "\n".join(lines)


def _html(rows: list[list[tuple[str, int]]]) -> str:
    body = "".join(
        "<tr>"
        + "".join(f'<td colspan="{s}">{t}</td>' if s > 1 else f"<td>{t}</td>" for t, s in r)
        + "</tr>"
        for r in rows
    )
    return f"<table>{body}</table>"


def test_markdown_and_html_give_the_same_tree() -> None:
    grid = _grid(4, 3)
    as_html = _html([[(t, 1) for t in row] for row in grid])
    (a,) = parse_tables(_markdown(grid))
    (b,) = parse_tables(f"Some text\n\n{as_html}\n\nmore")
    assert a == b
    assert teds(a, b) == 1.0


def test_header_cells_styles_and_wrappers_are_ignored() -> None:
    plain = "<table><tr><td>a</td><td>b</td></tr><tr><td>1</td><td>2</td></tr></table>"
    dressed = (
        '<table class="x"><thead><tr><th style="w">a</th><th><span>b</span></th></tr></thead>'
        "<tbody><tr><td align='right'> 1 </td><td><p>2</p></td></tr></tbody></table>"
    )
    (a,) = parse_tables(plain)
    (b,) = parse_tables(dressed)
    assert teds(a, b) == 1.0


REFERENCE = _markdown(_grid())


def _broken(kind: str) -> str:
    """The reference's 12x6 table with every character kept and its structure broken, in
    HTML: a GFM table pads or cuts each row to the header's width, so it cannot hold these."""
    rows = [[(t, 1) for t in row] for row in _grid()]
    if kind == "merged cell":  # two cells read as one spanning both
        rows[5] = [(rows[5][0][0] + rows[5][1][0], 2), *rows[5][2:]]
    elif kind == "dropped row":  # a row break lost: its cells run on in the row above
        rows[7] = rows[7] + rows.pop(8)
    elif kind == "shifted column":  # an empty cell pushes a row's cells one column right
        rows[10] = [("", 1), *rows[10]]
    return _html(rows)


@pytest.mark.parametrize("kind", ["merged cell", "dropped row", "shifted column"])
def test_broken_structure_lowers_teds_while_cer_stays_low(kind: str) -> None:
    output = _broken(kind)
    assert cer(output, REFERENCE) < 0.02
    score = score_tables(output, REFERENCE)
    assert score is not None and score.teds is not None and score.teds_structure is not None
    assert score.teds < 1.0
    assert score.teds_structure < 1.0
    same = score_tables(_html([[(t, 1) for t in row] for row in _grid()]), REFERENCE)
    assert same is not None and (same.teds, same.teds_structure) == (1.0, 1.0)


def test_missing_table_scores_zero_and_no_reference_table_is_none() -> None:
    score = score_tables("the model wrote prose only", REFERENCE)
    assert score is not None
    assert (score.teds, score.teds_structure, score.tables, score.found) == (0.0, 0.0, 1, 0)
    assert score.unscored == 0
    assert score_tables(REFERENCE, "no table here") is None


def test_tables_pair_in_reading_order() -> None:
    a = _html([[("a", 1), ("b", 1)]])
    b = _html([[("x", 2)], [("y", 1), ("z", 1)]])
    score = score_tables(f"{a}\n\n{b}", f"{a}\n\n{b}")
    assert score is not None and score.teds == 1.0 and score.tables == 2
    swapped = score_tables(f"{b}\n\n{a}", f"{a}\n\n{b}")
    assert swapped is not None and swapped.teds is not None and swapped.teds < 1.0


def test_colspan_counts_as_structure() -> None:
    (spanned,) = parse_tables(_html([[("a", 2)], [("b", 1), ("c", 1)]]))
    (flat,) = parse_tables(_html([[("a", 1)], [("b", 1), ("c", 1)]]))
    assert teds(flat, spanned, structure_only=True) < 1.0


def test_a_runaway_table_is_not_scored_but_counted() -> None:
    # A decoding loop's 500-row table against the 30-row reference: minutes of APTED.
    runaway = _html([[(t, 1) for t in row] for row in _grid(30, 10) * 17])
    reference = _markdown(_grid(30, 10))
    score = score_tables(f"{runaway}\n\n{runaway}", f"{reference}\n\n{_html([[('a', 1)]])}")
    assert score is not None
    assert (score.tables, score.found, score.unscored) == (2, 2, 1)
    assert score.teds is not None and score.teds < 0.01  # the second pair alone
    alone = score_tables(runaway, reference)
    assert alone is not None and (alone.teds, alone.teds_structure, alone.unscored) == (
        None,
        None,
        1,
    )
