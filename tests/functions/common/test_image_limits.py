"""Every limit at its edge: the limit itself is allowed, one past it is refused with a status and a message that
say which limit."""

from __future__ import annotations

import pytest

from functions.common.image_limits import ImageLimits, Violation
from functions.common.settings import Settings

LIMITS = ImageLimits(max_pixels=3000, max_side=100, max_aspect_ratio=4.0)


@pytest.mark.parametrize("size", [(1, 1), (100, 25), (25, 100), (60, 50), (50, 60), (20, 5), (5, 20)])
def test_sizes_at_or_within_every_limit_pass(size: tuple[int, int]) -> None:
    assert LIMITS.violation(*size) is None


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((0, 5), Violation(400, "image has empty dimensions 0x5")),
        ((5, 0), Violation(400, "image has empty dimensions 5x0")),
        ((101, 30), Violation(413, "image dimensions 101x30 exceed the 100 px side limit")),
        ((30, 101), Violation(413, "image dimensions 30x101 exceed the 100 px side limit")),
        ((61, 50), Violation(413, "image has 3050 pixels, more than the limit of 3000")),
        ((21, 5), Violation(400, "image dimensions 21x5 have an aspect ratio of 4.2:1, beyond the limit of 4:1 "
                                 "(MAX_ASPECT_RATIO)")),
        ((5, 21), Violation(400, "image dimensions 5x21 have an aspect ratio of 4.2:1, beyond the limit of 4:1 "
                                 "(MAX_ASPECT_RATIO)")),
    ],
)  # fmt: skip
def test_one_past_a_limit_is_refused_naming_it(size: tuple[int, int], expected: Violation) -> None:
    assert LIMITS.violation(*size) == expected


def test_the_side_limit_is_checked_before_the_pixel_count() -> None:
    assert LIMITS.violation(200, 1).message.endswith("side limit")  # type: ignore[union-attr]


def test_the_limits_come_from_the_settings() -> None:
    settings = Settings(max_pixels=7, max_image_side=8, max_aspect_ratio=2.5)
    assert ImageLimits.of(settings) == ImageLimits(max_pixels=7, max_side=8, max_aspect_ratio=2.5)
    assert ImageLimits() == ImageLimits.of(Settings())  # the defaults agree
