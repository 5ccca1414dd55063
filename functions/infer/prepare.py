"""``python -m functions.infer.prepare``: at image build, load the configured model on its engine, so that the
weights and the exported engine are baked into the image (``INFER_ENGINE_CACHE``) instead of made at cold start.

Fails (exit 1, saying why) when the model cannot be loaded or the configured engine cannot be built for it: an
image must not ship a silent fallback.
"""

from __future__ import annotations

import logging
import sys

from functions.common.settings import get_settings

from .app import model_spec
from .catalog import load_classifier
from .model import ModelUnavailable

log = logging.getLogger("functions.infer.prepare")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    wanted = f"{settings.infer_backend}/{settings.infer_precision}"
    try:
        classifier = load_classifier(model_spec(settings))
    except ModelUnavailable as exc:
        log.error("%s", exc)
        return 1
    if classifier.engine != wanted:
        log.error(
            "%s runs on %s, not on the configured %s (see the warning above)",
            classifier.name,
            classifier.engine,
            wanted,
        )
        return 1
    log.info("prepared %s on %s", classifier.name, classifier.engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
