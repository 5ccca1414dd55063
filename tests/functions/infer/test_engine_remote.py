"""An engine kept in S3 (INFER_ENGINE_URL): made and uploaded once by ``prepare --upload``, fetched into the temp
cache at a function's init and checked there as any engine; a missing or unreadable one fails the start naming
where it was looked for and how to put it there. S3 is moto's, in-process."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from functions.common.image_limits import ImageLimits
from functions.infer import engine_file, engine_remote
from functions.infer.config import EngineSpec, ModelSpec
from functions.infer.loading import load_classifier
from functions.infer.model import ModelUnavailable
from tests.helpers import photos

URL = "s3://faasinfer-engines/prod/engines"


@pytest.fixture
def s3(mocked_aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # Lambda's /tmp, this test's own
    (tmp_path / "tmp").mkdir()
    client = boto3.client("s3")
    client.create_bucket(Bucket="faasinfer-engines")
    return client


@pytest.mark.usefixtures("engine_build")
def test_an_engine_uploaded_once_is_fetched_at_init_where_its_source_files_are_absent(
    s3: Any, tiny_weights: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "resnet18-test.pth"
    weights.write_bytes(tiny_weights.read_bytes())
    made = ModelSpec("resnet18", str(weights), engine=EngineSpec(cache_dir=tmp_path / "build-cache"))
    built = load_classifier(made)
    where = engine_remote.upload(engine_file.folder(made), URL)
    assert where == f"{URL}/{engine_file.folder(made).name}/"
    listed = s3.list_objects_v2(Bucket="faasinfer-engines", Prefix="prod/engines/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == ["engine.onnx", "manifest.json"]

    weights.unlink()  # the deployed function has the engine's name, not the files it was made from
    deployed = replace(made, engine=replace(made.engine, cache_dir=tmp_path / "artifact-engines", remote=URL))
    fetched = load_classifier(deployed)
    batch = np.stack([fetched.preprocess(data, ImageLimits()) for _, data in list(photos())[:3]])
    assert np.allclose(fetched.net(batch), built.net(batch), atol=1e-5) and fetched.labels == built.labels
    assert (engine_file.folder(engine_file.in_temp_cache(deployed)) / "engine.onnx").is_file()  # in /tmp
    assert not (tmp_path / "artifact-engines").exists()  # the read-only artifact is never written


def test_a_missing_engine_names_where_it_was_looked_for_and_how_to_put_it_there(s3: Any, tmp_path: Path) -> None:
    spec = ModelSpec("resnet50", "DEFAULT", engine=EngineSpec(cache_dir=tmp_path / "none", remote=URL))
    with pytest.raises(ModelUnavailable) as raised:
        engine_remote.fetch(spec, URL)
    key = engine_file.folder(spec).name
    assert str(raised.value) == (
        f"no engine at {URL}/{key}/engine.onnx: make it and put it there with `python -m functions.infer.prepare "
        f"--upload {URL}` (the same INFER_* settings)"
    )


@pytest.mark.usefixtures("engine_build")
def test_a_damaged_engine_in_s3_is_refused_at_load_naming_its_copy(s3: Any, tiny_weights: Path, tmp_path: Path) -> None:
    made = ModelSpec("resnet18", str(tiny_weights), engine=EngineSpec(cache_dir=tmp_path / "build-cache"))
    load_classifier(made)
    folder = engine_file.folder(made)
    engine_remote.upload(folder, URL)
    onnx = (folder / "engine.onnx").read_bytes()
    s3.put_object(Bucket="faasinfer-engines", Key=f"prod/engines/{folder.name}/engine.onnx", Body=onnx[:1000])
    deployed = replace(made, engine=replace(made.engine, cache_dir=tmp_path / "artifact-engines", remote=URL))
    with pytest.raises(ModelUnavailable, match=r"engine .*faasinfer-engines.*engine\.onnx is damaged"):
        load_classifier(deployed)


def test_an_engine_url_that_is_not_s3_is_refused() -> None:
    with pytest.raises(ModelUnavailable, match="INFER_ENGINE_URL must be s3://bucket/prefix, not 'https://x/y'"):
        engine_remote.location("https://x/y")
