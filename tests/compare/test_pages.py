import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


BOUNDED = settings(max_examples=200, deadline=None, derandomize=True, database=None)
_SPEC_TEXT = st.text(alphabet="0123456789-, \t1x٣", max_size=20) | st.text(max_size=12)


@BOUNDED
@given(_SPEC_TEXT, st.integers(min_value=0, max_value=50))
def test_any_text_is_a_spec_or_one_input_error(text: str, n_pages: int) -> None:
    try:
        spec = parse_page_spec(text)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    try:
        pages = spec.select(n_pages)
    except PageRangeError as exc:
        assert "\n" not in str(exc)
        return
    assert pages and len(set(pages)) == len(pages)
    assert all(1 <= p <= n_pages for p in pages)


@BOUNDED
@given(
    st.lists(
        st.tuples(st.integers(1, 60), st.integers(0, 5), st.booleans()), min_size=1, max_size=6
    ),
    st.integers(1, 80),
)
def test_a_formatted_spec_selects_its_pages(
    parts: list[tuple[int, int, bool]], n_pages: int
) -> None:
    text = ",".join(f"{a}-" if open_end else f"{a}-{a + d}" for a, d, open_end in parts)
    wanted: list[int] = []
    for a, d, open_end in parts:
        for p in range(a, (n_pages if open_end else a + d) + 1):
            if p not in wanted:
                wanted.append(p)
    spec = parse_page_spec(text)
    if any(a > n_pages or (not open_end and a + d > n_pages) for a, d, open_end in parts):
        with pytest.raises(PageRangeError):
            spec.select(n_pages)
    else:
        assert spec.select(n_pages) == wanted


def test_a_huge_page_number_is_an_input_error() -> None:
    with pytest.raises(InputError, match="page spec"):
        parse_page_spec("9" * 5000)
