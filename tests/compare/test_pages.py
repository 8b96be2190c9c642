import pytest

from ocrtui.compare.pages import PageRangeError, parse_page_spec
from ocrtui.errors import InputError


@pytest.mark.parametrize(
    ("spec", "n", "want"),
    [
        ("1-3,7,10-", 12, [1, 2, 3, 7, 10, 11, 12]),
        ("2", 5, [2]),
        ("3-", 3, [3]),
        (" 1 - 2 ".replace(" ", ""), 2, [1, 2]),
        ("1-3,2-4", 5, [1, 2, 3, 4]),  # overlaps are not sent twice
        ("5,1", 5, [5, 1]),  # spec order is kept
    ],
)
def test_select(spec: str, n: int, want: list[int]) -> None:
    assert parse_page_spec(spec).select(n) == want


@pytest.mark.parametrize("spec", ["", "a", "0", "3-1", "1,,2", "1-2-3", "-3", "1.5"])
def test_malformed_spec_is_usage_error(spec: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_page_spec(spec)
    assert not isinstance(exc.value, PageRangeError)


@pytest.mark.parametrize(("spec", "msg"), [("1-8", "1-8"), ("10-", "10-"), ("6", "6")])
def test_out_of_range_is_a_document_error(spec: str, msg: str) -> None:
    with pytest.raises(PageRangeError, match=f"pages {msg} out of range .document has 5 pages"):
        parse_page_spec(spec).select(5)
