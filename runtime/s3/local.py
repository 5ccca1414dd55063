"""The local S3 endpoint: moto's server mode in a child process on loopback, started by ``runtime.local`` like the
broker. Presigned uploads (``functions/upload/staging.py``) go there, as they go to S3 on AWS.

Moto alone stores any form; ``policy.PostPolicyGate`` in front of it refuses what S3 refuses. Objects live in the
child's temporary files on disk (``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=1``), not in the runtime's memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from runtime.kafka.broker import _die_with_parent, free_port
from runtime.s3.policy import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, PostPolicyGate

__all__ = ["BUCKET", "LocalS3", "PostPolicyGate"]

log = logging.getLogger(__name__)


def serve(port: int) -> None:  # pragma: no cover - runs in the child process
    """The child: moto's S3 behind the gate on loopback, until the runtime ends it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    with warnings.catch_warnings():  # "ensure that you install moto[server]": it is
        warnings.simplefilter("ignore", UserWarning)
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    gate = PostPolicyGate(DomainDispatcherApplication(create_backend_app), {ACCESS_KEY: SECRET_KEY}, REGION)
    make_server("127.0.0.1", port, gate, threaded=True, request_handler=MotoRequestHandler).serve_forever()


class LocalS3:
    """``start()`` → the variables the functions get for it; ``stop()`` ends the child and removes its objects."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.folder = ""
        self.endpoint_url = ""

    def start(self, timeout_s: float = 30.0) -> dict[str, str]:
        """Start the server and create the staging bucket."""
        import boto3

        self.folder, port = tempfile.mkdtemp(prefix="faasinfer-s3-"), free_port()
        environment = {**os.environ, "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE": "1", "TMPDIR": self.folder}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtime.s3.local", str(port)], env=environment,
            cwd=Path(__file__).resolve().parents[2], preexec_fn=_die_with_parent,
        )  # fmt: skip
        self.endpoint_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"local S3 did not listen on {self.endpoint_url} within {timeout_s}s")
        client = boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name=REGION)  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        log.info("local S3 (moto, pid %d) for presigned uploads on %s", self.process.pid, self.endpoint_url)
        return {"UPLOAD_STAGING_URL": f"s3://{BUCKET}/incoming", "S3_ENDPOINT_URL": self.endpoint_url}

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            self.process.kill()  # nothing once it has exited
            self.process.wait()
            self.process = None
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""


if __name__ == "__main__":  # pragma: no cover
    serve(int(sys.argv[1]))
