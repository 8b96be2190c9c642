"""Fixtures for the comparison engine: generated documents and model configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ocrtui.compare.sample_suite import sample_suite_path
from ocrtui.config import ModelConfig
from tests.plugins.workers import run_wide_dir

MakePdf = Callable[..., Path]


@pytest.fixture(scope="session")
def sample_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with run_wide_dir(tmp_path_factory, "sample-suite-cache") as cache:
        return sample_suite_path(cache)


def model(name: str, profile: str = "generic", **kw: object) -> ModelConfig:
    return ModelConfig.model_validate(
        {"name": name, "model": f"org/{name}", "port": 8000 + len(name),
         "gpu_memory_utilization": 0.4, "profile": profile, **kw}
    )  # fmt: skip


@pytest.fixture
def make_pdf(tmp_path: Path) -> MakePdf:
    """A born-digital PDF whose pages hold the given texts (Latin core font)."""

    def make(name: str, pages: list[str], password: str | None = None) -> Path:
        from fpdf import FPDF

        pdf = FPDF(format="A4")
        pdf.set_font("Helvetica", size=14)
        for text in pages:
            pdf.add_page()
            pdf.multi_cell(0, 10, text)
        if password:
            from fpdf.enums import EncryptionMethod

            pdf.set_encryption(
                owner_password="owner-" + password,
                user_password=password,
                encryption_method=EncryptionMethod.AES_256,
            )
        path = tmp_path / name
        pdf.output(str(path))
        return path

    return make
