"""Packaging: one version, read by the wheel, `dataprep --version` and the manifest; and dataprep
whole (prepare, open, the polars views, inspect DIR) where torch and the trainer are not installed.
Building the wheels themselves is `make wheels` (docs/api.md records the check in a fresh virtualenv)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import dataprep
from tests.conftest import ROOT, SAMPLE, SAMPLE_TOKENIZER, python_without


def test_dataprep_version_is_the_manifests(tmp_path):
    shown = subprocess.run([sys.executable, "-m", "dataprep", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    out = dataprep.prepare(data=[SAMPLE], tokenizer=str(SAMPLE_TOKENIZER), out=tmp_path / "out", progress=False)
    assert shown == f"dataprep {out.manifest['dataprep_version']}" == f"dataprep {dataprep.__version__}"


@pytest.mark.parametrize("package", ["dataprep", "trainer"])
def test_each_wheel_takes_its_version_from_its_package(package):
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": f"{package}.__version__"}


def test_dataprep_works_without_torch_or_the_trainer(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from dataprep.cli import main
        assert main(["prepare", "--data", {str(SAMPLE)!r}, "--tokenizer", {str(SAMPLE_TOKENIZER)!r}, "--out", {str(tmp_path / "out")!r},
                     "--quiet"]) == 0
        assert main(["inspect", {str(tmp_path / "out")!r}, "--json"]) == 0
        import dataprep
        d = dataprep.open({str(tmp_path / "out")!r})
        for phase, side in d.parts():
            view = d.phase(phase, side)
            assert view.to_polars().height == len(view) == view.lazy().collect().height > 0
            assert view.decode(0)
        try:
            d.phase(1).torch()
        except dataprep.DataprepError as exc:
            print("torch():", exc)
        assert "torch" not in sys.modules, "dataprep imported torch"
    """)
    proc = python_without({"torch", "trainer"}, code)
    assert proc.returncode == 0, proc.stderr
    assert "torch(): torch() needs the trainer package: pip install rlhfkit-trainer" in proc.stdout
