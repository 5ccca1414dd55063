"""The local S3 endpoint: moto's server mode on loopback, started by ``runtime.local`` as it starts the broker.

Presigned uploads (``functions/upload/staging.py``) go there, so the browser and the CLI post to a real S3 API with
a real presigned policy, as on AWS. Objects live in the runtime's memory (a staged upload is confirmed within
seconds); the images themselves stay in the blob folder.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from .broker import free_port

log = logging.getLogger(__name__)

BUCKET = "faasinfer-staging"


class LocalS3:
    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint_url = ""

    def start(self) -> dict[str, str]:
        """Start the server and create the staging bucket; the variables the functions get for it."""
        import boto3

        with warnings.catch_warnings():  # "ensure that you install moto[server]": it is
            warnings.simplefilter("ignore", UserWarning)
            from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id="local", aws_secret_access_key="local",
            region_name="us-east-1",
        )  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        log.info("local S3 (moto) for presigned uploads on %s", self.endpoint_url)
        return {"UPLOAD_STAGING_URL": f"s3://{BUCKET}/incoming", "S3_ENDPOINT_URL": self.endpoint_url}

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
