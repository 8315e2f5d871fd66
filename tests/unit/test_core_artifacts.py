"""Manifest and artifact verification: each failure names the file and says how to fix it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.core.served import verify_artifacts
from modelspec.manifest import ARTIFACT_FILE, MANIFEST_FILE, ArtifactError, Manifest


@pytest.fixture
def folder(artifacts: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    return copy


def _edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_good_artifacts_verify(folder: Path) -> None:
    manifest, artifact = verify_artifacts(folder)
    assert artifact == folder / ARTIFACT_FILE
    assert manifest.compiled is not None
    assert manifest.model_version == manifest.compiled.sha256[:12]


def test_a_missing_manifest_says_to_train_and_compile(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no manifest.json in .*\nHint: train and compile"):
        verify_artifacts(tmp_path)


def test_a_manifest_that_is_not_json_is_refused(folder: Path) -> None:
    (folder / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not a valid manifest.*\nHint: .*re-run"):
        verify_artifacts(folder)


def test_a_manifest_missing_a_field_names_it(folder: Path) -> None:
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    del data["preprocessing"]["total_bedrooms_median"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="preprocessing.total_bedrooms_median: Field required"):
        verify_artifacts(folder)


def test_a_manifest_from_another_feature_set_is_refused(folder: Path) -> None:
    _edit_manifest(folder, feature_hash="0" * 64)
    with pytest.raises(ArtifactError, match="feature spec 000000000000.*\nHint: retrain"):
        verify_artifacts(folder)


def test_an_uncompiled_manifest_says_to_compile(folder: Path) -> None:
    _edit_manifest(folder, compiled=None)
    with pytest.raises(ArtifactError, match="no compiled artifact\nHint: run `python -m compile`"):
        verify_artifacts(folder)


def test_a_missing_artifact_is_named(folder: Path) -> None:
    (folder / ARTIFACT_FILE).unlink()
    with pytest.raises(ArtifactError, match=f"names .*{ARTIFACT_FILE}, which does not exist"):
        verify_artifacts(folder)


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_a_damaged_artifact_fails_its_checksum(folder: Path, damage: str) -> None:
    path = folder / ARTIFACT_FILE
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256 .*\\(the file is corrupted.*\nHint: copy"):
        verify_artifacts(folder)


def test_manifest_round_trips(folder: Path, tmp_path: Path) -> None:
    manifest = Manifest.load(folder)
    out = tmp_path / "out"
    out.mkdir()
    manifest.save(out)
    assert Manifest.load(out) == manifest
