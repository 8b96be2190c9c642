from pathlib import Path

import pytest
from PIL import Image

from ocrtui.compare import sample_suite as suite_module
from ocrtui.compare.documents import DocumentSpec, inspect_document
from ocrtui.compare.scoring import cer
from ocrtui.compare.suite import load_suite
from ocrtui.errors import InputError


def test_sample_suite_covers_the_seed_dimensions(sample_suite: Path) -> None:
    suite = load_suite(sample_suite)
    docs = [inspect_document(d) for d in suite.documents]
    assert [d.spec.category for d in docs] == ["zh_contract", "en_latex", "table", "id_card"]
    assert sum(len(d.pages) for d in docs) == 5
    assert all(set(d.references) == set(d.pages) for d in docs)
    assert all(d.spec.critical for d in docs)
    with Image.open(sample_suite.parent / "id_card.png") as im:
        assert im.size == (1012, 638)


def test_references_are_exactly_what_the_pdfs_print(sample_suite: Path) -> None:
    for d in load_suite(sample_suite).documents:
        if d.path.suffix != ".pdf":
            continue
        doc = inspect_document(d)
        printed = inspect_document(DocumentSpec(d.path, d.name, reference="text-layer"))
        for page, ref in doc.references.items():
            assert cer(printed.references[page], ref) == 0.0, (d.name, page)
        for c in d.critical:
            assert any(c in r for r in doc.references.values()), c


def test_cached_per_version(sample_suite: Path) -> None:
    stamp = sample_suite.stat().st_mtime_ns
    assert suite_module.sample_suite_path(sample_suite.parents[2]) == sample_suite
    assert sample_suite.stat().st_mtime_ns == stamp  # not regenerated
    assert sample_suite.parent.name == suite_module.SAMPLES_VERSION


def test_missing_cjk_font_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite_module, "CJK_FONT", tmp_path / "no-such-font.ttc")
    with pytest.raises(InputError, match="install the Debian package fonts-wqy-microhei"):
        suite_module.sample_suite_path(tmp_path)
