"""What the demo says once its table is printed: how to serve the same stack, on the port it could use."""

from __future__ import annotations

from runtime.demo import next_steps


def test_next_steps_name_make_run_and_the_page() -> None:
    text = next_steps("http://127.0.0.1:8000")
    assert "`make run` serves the same stack until Ctrl-C" in text
    assert "open http://127.0.0.1:8000/ in a browser" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_next_steps_name_the_port_the_demo_took_when_8000_was_busy() -> None:
    text = next_steps("http://127.0.0.1:8001")
    assert "`make run PORT=8001`" in text and "http://127.0.0.1:8001/" in text
