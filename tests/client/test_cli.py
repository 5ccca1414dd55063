"""The ``faasinfer`` CLI against a running local simulation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers import PHOTOS

ROOT = Path(__file__).resolve().parents[2]


def _cli(base: str, *args: str, timeout: float = 180, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; ``config``: where it remembers the last session (default: a fresh folder)."""
    config_dir = config or Path(tempfile.mkdtemp(prefix="faasinfer-config-"))
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "--url", base, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "FAASINFER_CONFIG_DIR": str(config_dir)},
    )


def test_register_prints_a_session(local_simulation: str) -> None:
    done = _cli(local_simulation, "register")
    assert done.returncode == 0 and re.fullmatch(r"[0-9a-f-]{36}\s*", done.stdout)


def test_upload_folder_and_wait_prints_topk_table(local_simulation: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "camera.png"):
        shutil.copy(PHOTOS / name, folder / name)
    (folder / "notes.txt").write_text("not an image, skipped by the folder scan")
    done = _cli(local_simulation, "upload", str(folder), "--topk", "3", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # Progress bars only on a terminal (here stderr is a pipe): a script's logs get the table and one line each.
    assert "uploading" not in out + done.stderr and "session" in done.stderr
    for name in ("chelsea.jpg", "coffee.jpg", "camera.png"):
        assert name in out
    rows = [line for line in out.splitlines() if " done " in line]
    assert len(rows) == 3 and all(len(re.findall(r"\(0\.\d{3}\)", row)) == 3 for row in rows)


def test_results_of_an_unknown_session_is_a_clear_error(local_simulation: str) -> None:
    done = _cli(local_simulation, "results", "--uuid", "00000000-0000-4000-8000-000000000000", "--seq-end", "3")
    assert done.returncode == 1 and "error 404" in done.stderr and "unknown session" in done.stderr


def test_demo_loop_runs_rounds(local_simulation: str, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("rocket.jpg", "astronaut.jpg"):
        shutil.copy(PHOTOS / name, folder / name)
    done = _cli(local_simulation, "demo", "--photos", str(folder), "--rounds", "2", "--interval", "0.1", "--topk", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 rounds of 2 photos" in done.stderr
    assert sum(1 for line in done.stdout.splitlines() if " done " in line) == 4


def _nine_megabyte_photo(path: Path) -> bytes:
    """A real photo blown up to 4000x3000 with noise so that it stays ~9 MB as a JPEG."""
    import io
    import random

    from PIL import Image

    base = Image.open(PHOTOS / "chelsea.jpg").convert("RGB").resize((4000, 3000))
    noise = Image.frombytes("RGB", base.size, random.Random(3).randbytes(4000 * 3000 * 3))
    buffer = io.BytesIO()
    Image.blend(base, noise, 0.25).save(buffer, format="JPEG", quality=97)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_an_image_larger_than_a_lambda_request_goes_presigned_and_ends_done(
    local_simulation: str, tmp_path: Path
) -> None:
    import httpx

    data = _nine_megabyte_photo(tmp_path / "big.jpg")
    assert 8_000_000 < len(data) < 10 * 1024 * 1024
    done = _cli(local_simulation, "upload", str(tmp_path / "big.jpg"), "--topk", "3", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if " done " in line]
    assert len(rows) == 1 and "big.jpg" in rows[0] and len(re.findall(r"\(0\.\d{3}\)", rows[0])) == 3

    session = httpx.post(f"{local_simulation}/register").json()["uuid"]
    inline = httpx.post(
        f"{local_simulation}/image",
        data={"uuid": session, "seq": "0", "topk": "3"},
        files={"payload": ("big.jpg", data)},
        timeout=60,
    )
    assert inline.status_code == 413
    assert "POST /upload-url (a presigned S3 upload)" in inline.json()["error"]


def _closed_port_url() -> str:
    from runtime.kafka.broker import free_port

    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_a_server_that_is_down_is_one_line_and_exit_1() -> None:
    url = _closed_port_url()
    done = _cli(url, "register", timeout=60)
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.strip().splitlines() == [
        f"cannot reach {url} (All connection attempts failed); is the server running? `make run` starts one locally"
    ]
    assert "Traceback" not in done.stdout + done.stderr


def test_debug_adds_the_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "--debug", "--url", _closed_port_url(), "register"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1 and "Traceback" in done.stderr and "ConnectError" in done.stderr


def test_a_url_without_a_scheme_is_one_line_and_exit_2() -> None:
    done = _cli("127.0.0.1:8000", "register", timeout=60)
    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.strip().splitlines() == [
        "--url '127.0.0.1:8000' must start with http:// or https:// (e.g. http://127.0.0.1:8000)"
    ]


def test_a_missing_file_is_reported_before_anything_is_sent(tmp_path: Path) -> None:
    url = _closed_port_url()  # would fail differently if the CLI tried to register first
    done = _cli(url, "upload", str(tmp_path / "nope.jpg"), str(PHOTOS), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"no such file or folder: {tmp_path / 'nope.jpg'}"]


def test_a_bad_file_in_a_folder_is_skipped_named_and_the_rest_classified(local_simulation: str, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg"):
        shutil.copy(PHOTOS / name, folder / name)
    (folder / "broken.jpg").write_text("a text file with an image's name")  # seq 0: sorted first
    done = _cli(local_simulation, "upload", str(folder), "--topk", "2", "--wait")
    out = done.stdout
    assert done.returncode == 1, out + done.stderr  # not everything went through: say so in the exit code
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped")]  # diagnostics
    assert skipped == [
        f"skipped {folder / 'broken.jpg'} (seq 0): error 415: payload is not a supported image (JPEG, PNG, WEBP, "
        "GIF, BMP, TIFF)"
    ]
    assert "uploaded 2 of 3 files" in done.stderr
    rows = [line for line in out.splitlines() if " done " in line]
    assert len(rows) == 2 and "chelsea.jpg" in out and "coffee.jpg" in out


def test_results_without_arguments_show_the_last_upload(local_simulation: str, tmp_path: Path) -> None:
    config = tmp_path / "config"
    nothing = _cli(local_simulation, "results", config=config)
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == (
        f"no session given and none remembered for {local_simulation}: faasinfer results --uuid <uuid> --seq-end <N>"
    )
    refused = tmp_path / "refused.jpg"
    refused.write_text("not an image")
    upload = _cli(local_simulation, "upload", str(refused), config=config)  # nothing accepted: not remembered
    assert upload.returncode == 1 and "faasinfer results" not in upload.stderr
    assert _cli(local_simulation, "results", config=config).returncode == 2
    upload = _cli(local_simulation, "upload", str(PHOTOS / "rocket.jpg"), "--topk", "2", config=config)
    assert upload.returncode == 0 and "faasinfer results --wait" in upload.stderr  # the command to run next
    later = _cli(local_simulation, "results", "--wait", "--json", config=config)
    assert later.returncode == 0, later.stdout + later.stderr
    answer = json.loads(later.stdout)
    assert [(i["seq"], i["status"], len(i["predictions"]), i["file"]) for i in answer["items"]] == [
        (0, "done", 2, "rocket.jpg")  # the file name travels with its seq
    ]
    table = _cli(local_simulation, "results", config=config)
    assert "rocket.jpg" in table.stdout
    # the same server under another URL is another deployment as far as the CLI knows: nothing remembered there
    other = local_simulation.replace("127.0.0.1", "localhost")
    assert _cli(other, "results", config=config).returncode == 2


def test_results_wait_returns_at_once_when_nothing_was_accepted(local_simulation: str) -> None:
    uuid = _cli(local_simulation, "register").stdout.strip()
    done = _cli(local_simulation, "--json", "results", "--uuid", uuid, "--seq-end", "3", "--wait", timeout=60)
    assert done.returncode == 1
    message = f"nothing was accepted in session {uuid} at seq 0..3: no result will come"
    assert json.loads(done.stdout) == {"error": message} and done.stderr.strip() == message


def test_options_go_before_or_after_the_command_and_json_is_for_scripts(local_simulation: str) -> None:
    done = _cli("http://127.0.0.1:9", "register", "--url", local_simulation, "--json")  # after the command wins
    assert done.returncode == 0 and re.fullmatch(r"[0-9a-f-]{36}", json.loads(done.stdout)["uuid"])
    upload = _cli(local_simulation, "upload", "--json", "--wait", "--topk", "1", str(PHOTOS / "camera.png"))
    report = json.loads(upload.stdout)  # stdout is the JSON alone: no progress bars, no tables
    assert report["accepted"] == [0] and report["refused"] == [] and report["items"][0]["status"] == "done"


def _plain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )


def test_help_says_each_default_once_in_plain_text() -> None:
    upload, results, top = _plain("upload", "--help"), _plain("results", "--help"), _plain("--help")
    assert upload.returncode == 0 and "labels per image (default: 5)" in " ".join(upload.stdout.split())
    text = " ".join(results.stdout.split())
    assert "session (default: the last upload's, remembered)" in text and "(default: None)" not in text
    assert "(default: False)" not in text and "``" not in top.stdout + upload.stdout + results.stdout


def test_version_is_said() -> None:
    done = _plain("--version")
    assert done.returncode == 0 and re.fullmatch(r"faasinfer \d+\.\d+\.\d+\S*\n", done.stdout)


def test_topk_and_the_size_limit_are_checked_before_anything_is_sent(tmp_path: Path) -> None:
    url = _closed_port_url()  # anything sent would fail as "cannot reach"
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8" + b"\0" * (11 * 1024 * 1024))
    topk = _cli(url, "classify", str(PHOTOS / "chelsea.jpg"), "--topk", "0", timeout=60)
    assert topk.returncode == 2 and topk.stderr.strip() == "--topk 0 is out of range: 1 to 1000"
    size = _cli(url, "--json", "classify", str(big), timeout=60)
    message = f"{big} is 11 MiB, over the 10 MiB an image may have"
    assert size.returncode == 2 and size.stderr.strip() == message and json.loads(size.stdout) == {"error": message}


def test_a_json_failure_is_json_on_stdout_too() -> None:
    url = _closed_port_url()
    done = _cli(url, "--json", "register", timeout=60)
    assert done.returncode == 1 and json.loads(done.stdout)["error"].startswith(f"cannot reach {url}")


class _Impostor(BaseHTTPRequestHandler):
    """Not a faasinfer API: 401 JSON on /register (a keyed deployment), a 404 page elsewhere."""

    def do_POST(self) -> None:
        if self.path == "/register":
            self._answer(401, "application/json", b'{"error": "missing or wrong x-api-key header"}')
        else:
            self._answer(404, "text/html", b"<html>Not Found</html>")

    def _answer(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_a_401_names_the_key_option_and_a_foreign_server_is_said_to_be_one() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        keyed = _cli(url, "register", timeout=60)
        foreign = _cli(f"{url}/prod", "register", timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert keyed.returncode == 1 and keyed.stderr.strip() == (
        "error 401: missing or wrong x-api-key header; give the key with --api-key or FAASINFER_API_KEY"
    )
    assert foreign.returncode == 1 and foreign.stderr.strip() == (
        f"no faasinfer API at {url}/prod (404 for POST /prod/register): check --url (a deployed API's URL is the "
        "stack's ApiUrl output)"
    )


def test_classify_prints_the_labels_of_one_image_in_one_call(local_simulation: str) -> None:
    done = _cli(local_simulation, "classify", str(PHOTOS / "chelsea.jpg"), "--topk", "3", "--wait", "25")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"[01]\.\d{3}  \S.*", line) for line in lines), lines
    scores = [float(line.split()[0]) for line in lines]
    assert scores == sorted(scores, reverse=True)


def test_classify_json_is_the_answer_with_the_file_name(local_simulation: str) -> None:
    done = _cli(local_simulation, "--json", "classify", str(PHOTOS / "coffee.jpg"), "--topk", "2", "--wait", "25")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "done" and answer["file"] == "coffee.jpg" and len(answer["predictions"]) == 2
    assert answer["seq"] == 0 and answer["model"] == "resnet18:file:resnet18-test.pth"


def test_classify_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _cli("http://127.0.0.1:9", "classify", str(tmp_path / "absent.jpg"))
    assert done.returncode == 2 and done.stdout == "" and "no such file" in done.stderr
