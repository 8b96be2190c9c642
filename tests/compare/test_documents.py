from pathlib import Path

import pytest
from PIL import Image

from ocrtui.compare.documents import (
    DocumentError,
    DocumentSpec,
    expand_inputs,
    inspect_document,
)
from ocrtui.compare.page_tests import Present
from ocrtui.compare.pages import parse_page_spec
from ocrtui.compare.scoring import cer
from tests.plugins.compare_inputs import MakePdf


def spec(path: Path, **kw: object) -> DocumentSpec:
    return DocumentSpec(path=path, name=path.name, **kw)  # type: ignore[arg-type]


def test_text_layer_reference_from_born_digital_pdf(make_pdf: MakePdf) -> None:
    pages = ["First page: invoice 2026-03-01 total 4500.00", "Second page, signed by A. Chen"]
    path = make_pdf("born.pdf", pages)
    doc = inspect_document(spec(path, reference="text-layer"))
    assert doc.kind == "pdf" and doc.page_count == 2 and doc.pages == (1, 2)
    for n, text in enumerate(pages, 1):
        assert cer(doc.references[n], text) == 0.0


def test_text_layer_on_a_scan_is_a_document_error(tmp_path: Path, make_pdf: MakePdf) -> None:
    path = make_pdf("blank.pdf", [""])
    with pytest.raises(DocumentError, match="no text layer"):
        inspect_document(spec(path, reference="text-layer"))


def test_sidecar_references(make_pdf: MakePdf, tmp_path: Path) -> None:
    path = make_pdf("doc.pdf", ["a", "b", "c"])
    (tmp_path / "doc.p2.md").write_text("# page two", encoding="utf-8")
    doc = inspect_document(spec(path))
    assert doc.references == {2: "# page two"}
    img = tmp_path / "card.png"
    Image.new("RGB", (40, 20), "white").save(img)
    (tmp_path / "card.txt").write_text("card text", encoding="utf-8")
    assert inspect_document(spec(img)).references == {1: "card text"}


def test_reference_pattern_missing_page_is_a_document_error(make_pdf: MakePdf) -> None:
    path = make_pdf("doc.pdf", ["a"])
    with pytest.raises(DocumentError, match=r"reference for page 1: .*file not found"):
        inspect_document(spec(path, reference=str(path.parent / "refs/doc.p{page}.txt")))


def test_tests_beyond_the_last_page_are_a_document_error(make_pdf: MakePdf) -> None:
    path = make_pdf("doc.pdf", ["a", "b"])
    ok = (Present(page=2, text="b"),)
    assert inspect_document(spec(path, tests=ok)).page_count == 2
    with pytest.raises(DocumentError, match=r"tests for page\(s\) 3 but it has 2 page"):
        inspect_document(spec(path, tests=(*ok, Present(page=3, text="c"))))


def test_bad_pdfs(tmp_path: Path, make_pdf: MakePdf) -> None:
    good = make_pdf("good.pdf", ["hello"])
    data = good.read_bytes()
    cases = {
        "empty.pdf": (b"", "empty file"),
        "truncated.pdf": (data[: len(data) // 2], "not a readable PDF"),
        "garbage.pdf": (b"%PDF-1.7\n" + bytes(range(256)) * 8, "not a readable PDF"),
        "text.pdf": (b"just some text\n", "not a readable PDF"),
    }
    for name, (content, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(DocumentError, match=msg) as exc:
            inspect_document(spec(p))
        assert str(exc.value).startswith(str(p))


def test_encrypted_pdf_needs_password(make_pdf: MakePdf) -> None:
    path = make_pdf("secret.pdf", ["classified"], password="s3cret")
    with pytest.raises(DocumentError, match="encrypted: give --password"):
        inspect_document(spec(path))
    with pytest.raises(DocumentError, match="wrong password"):
        inspect_document(spec(path, password="nope"))
    doc = inspect_document(spec(path, password="s3cret", reference="text-layer"))
    assert "classified" in doc.references[1]


def test_other_bad_inputs(tmp_path: Path, make_pdf: MakePdf) -> None:
    with pytest.raises(DocumentError, match="file not found"):
        inspect_document(spec(tmp_path / "missing.pdf"))
    doc = tmp_path / "notes.docx"
    doc.write_bytes(b"PK\x03\x04")
    with pytest.raises(DocumentError, match=r"unsupported file type \.docx"):
        inspect_document(spec(doc))
    fake_png = tmp_path / "fake.png"
    fake_png.write_bytes(b"not an image at all")
    with pytest.raises(DocumentError, match="not a readable image"):
        inspect_document(spec(fake_png))
    three = make_pdf("three.pdf", ["a", "b", "c"])
    with pytest.raises(DocumentError, match=r"pages 2-5 out of range \(document has 3 pages\)"):
        inspect_document(spec(three, pages=parse_page_spec("2-5")))


def test_multipage_tiff_and_folder_expansion(tmp_path: Path, make_pdf: MakePdf) -> None:
    frames = [Image.new("RGB", (60, 40), c) for c in ("white", "gray", "black")]
    tiff = tmp_path / "b_scan.tiff"
    frames[0].save(tiff, save_all=True, append_images=frames[1:])
    make_pdf("a_doc.pdf", ["x"])
    (tmp_path / "c_notes.txt").write_text("ignored: not a document type", encoding="utf-8")
    specs = expand_inputs([str(tmp_path)], pages=parse_page_spec("2-"))
    assert [s.path.name for s in specs] == ["a_doc.pdf", "b_scan.tiff"]
    doc = inspect_document(specs[1])
    assert doc.kind == "image" and doc.page_count == 3 and doc.pages == (2, 3)
    with pytest.raises(DocumentError, match="out of range"):
        inspect_document(specs[0])


def test_duplicate_names_get_suffixes(tmp_path: Path) -> None:
    specs = expand_inputs([str(tmp_path / "a.pdf"), str(tmp_path / "a.pdf")])
    assert [s.name for s in specs] == [str(tmp_path / "a.pdf"), str(tmp_path / "a.pdf") + "#2"]
