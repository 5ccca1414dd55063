"""``python -m runtime.local``: the whole system on one machine, driven by ``template.yaml``.

Embedded by default (Tansu broker child process, SQLite, blob folder); external with ``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL`` and ``BLOB_URL`` in the environment (e.g. the ``local/`` docker compose stack).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runtime import supervisor
from runtime.app import DEFAULT_HOME, dependency_errors, kafka_auth, loops, open_store, settings_from
from runtime.esm.kafka import RetryPolicy
from runtime.kafka.broker import EmbeddedBroker, ensure_topics
from runtime.lambdafn.environment import (
    ROOT,
    at_task_root,
    declared_names,
    function_environment,
    local_home,
    local_parameters,
)
from runtime.lambdafn.placement import artifact_of
from runtime.logs import LogSettings, configure_logging
from runtime.s3.local import LocalS3
from runtime.services import Placement, broker_watch, http_service, in_process_functions, worker_count, worker_processes
from runtime.shared_metrics import restart_with_shared_metrics
from runtime.sockets import listening_socket, nearby_free_port
from runtime.template import load_template

log = logging.getLogger("runtime.local")


@dataclass(frozen=True)
class Options:
    template: Path = ROOT / "template.yaml"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int | None = None
    http_processes: int = 1
    http_instances: int = 4
    partitions: int = 4
    schedule_interval: float | None = None
    max_retries: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    functions: tuple[str, ...] = ()
    demo: bool = False
    build_dir: Path | None = None


def parse_options(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> Options:
    p = argparse.ArgumentParser(prog="python -m runtime.local", description=__doc__.splitlines()[0])
    p.add_argument("--template", type=Path, default=Options.template)
    p.add_argument("--host", default=Options.host)
    p.add_argument("--port", type=int, default=int(environ.get("PORT", Options.port)))
    p.add_argument("--workers", type=int, help="processes per function marked LocalWorkers (default: cores // threads)")
    p.add_argument("--http-processes", type=int, default=1, metavar="N", help="processes serving the HTTP API")
    p.add_argument(
        "--http-instances",
        type=int,
        default=4,
        metavar="N",
        help="execution environments per HTTP function and process",
    )
    p.add_argument("--partitions", type=int, default=4, help="partitions of topics the runtime creates")
    p.add_argument("--schedule-interval", type=float, metavar="SECONDS", help="run every Schedule at this interval")
    p.add_argument("--max-retries", type=int, help="retries of a failing batch before the DLQ")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter override")
    p.add_argument("--functions", default="", metavar="NAME,...", help="run only these template functions")
    p.add_argument("--demo", action="store_true", help="upload the demo photos, print their top-k, then exit")
    p.add_argument(
        "--build-dir",
        type=Path,
        metavar="DIR",
        help="run zip functions from their `sam build` artifacts (DIR/<FunctionName>) through awslambdaric",
    )
    a = p.parse_args(argv)
    return Options(
        a.template, a.host, a.port, a.workers, a.http_processes, a.http_instances, a.partitions, a.schedule_interval,
        a.max_retries, dict(kv.split("=", 1) for kv in a.param), tuple(filter(None, a.functions.split(","))), a.demo,
        a.build_dir,
    )  # fmt: skip


def resolve(
    options: Options, shell: Mapping[str, str], bootstrap: str, services: Mapping[str, str] | None = None
) -> list[Placement]:
    """Every function of the template (with this run's parameters), each with its own environment."""
    template = load_template(options.template)
    parameters = {**local_parameters(template, shell, options.params), "KafkaBootstrapServers": bootstrap}
    template = load_template(options.template, parameters)
    if options.functions:
        template = template.only(list(options.functions))
    declared = declared_names(template.functions)
    placements = []
    for spec in template.functions:
        environment = function_environment(spec, shell, declared, services=services)
        placements.append(Placement(spec, environment, settings_from(environment)))
    return placements


def topics_of(placements: Sequence[Placement], partitions: int) -> dict[str, int]:
    topics = {source.topic: partitions for p in placements for source in p.spec.kafka}
    for p in placements:
        for name in (p.settings.request_topic, p.settings.result_topic, p.settings.dlq_topic):
            topics.setdefault(name, partitions)
    return topics


async def prepare_database(placements: Sequence[Placement]) -> None:
    """Create the tables of every database the functions use (they would on first connect; this fails early)."""
    for url in {p.settings.database_url for p in placements if p.settings.database_url}:
        store = open_store(url)
        try:
            await store.init_schema()
        except sqlite3.DatabaseError as exc:
            path = url.split(":///", 1)[-1]
            raise CannotStart(
                f"the database file {path} cannot be used ({exc}): move it away (an empty one is created) "
                "or set DATABASE_URL"
            ) from None
        except dependency_errors() as exc:  # wrong credentials, no server: one line, not a traceback
            where = url.split("@")[-1].split("?")[0]
            raise CannotStart(f"the database {where} cannot be used: {exc}; check DATABASE_URL") from None
        finally:
            await store.close()
        log.info("database %s", url.split("@")[-1])


# What a function's image build runs after installing its code (local/Dockerfile.infer's last step): the engine is
# exported once, in a process of its own, and the function's processes only load it (they never import torch).
BUILD_STEPS = {"functions.infer.app": "functions.infer.prepare"}


async def build(placements: Sequence[Placement], build_dir: Path | None) -> None:
    """Each function's build step, in the function's own environment, for the functions that run from source (an
    artifact was built with it); its failure stops the start."""
    for placement in placements:
        step = BUILD_STEPS.get(placement.spec.module)
        if step is not None and artifact_of(placement.spec, build_dir) is None:
            path = os.pathsep.join(filter(None, [str(ROOT), placement.environment.get("PYTHONPATH")]))
            environment = {**at_task_root(placement.environment, None), "PYTHONPATH": path}  # the code run here
            failure = await supervisor.run_to_end([sys.executable, "-m", step], environment, _log_line)
            if failure is not None:
                raise CannotStart(f"cannot start: {failure}")


def _log_line(line: str) -> None:
    log.info("%s", line)


class CannotStart(Exception):
    """What stops the runtime before it serves, said in one line."""


def bind(options: Options) -> socket.socket:
    """The API's socket, bound before anything starts, so a taken port fails at once; the demo, which exits by
    itself, takes the next free port instead."""
    host, port, shared = options.host, options.port, options.http_processes > 1
    try:
        return listening_socket(host, port, shared)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise CannotStart(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        free = nearby_free_port(host, port)
        if not options.demo:
            raise CannotStart(
                f"cannot listen on {host}:{port}: another program is using that port; pick another one: "
                f"make run PORT={free} (or python -m runtime.local --port {free})"
            ) from None
        log.info("port %d is taken; the demo uses %d", port, free)
        return listening_socket(host, free, shared)


class Stop:
    """Ctrl-C or SIGTERM. While the runtime starts (``cancels_start``), the start is cancelled and what started
    stops again; later, ``requested`` is set and the pieces stop in reverse order. Either way child exits are
    expected from then on (``supervisor.SHUTDOWN``): a terminal sends Ctrl-C to every process of its foreground
    process group."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.cancels_start = True
        self._starting = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, self._signalled)

    def _signalled(self) -> None:
        supervisor.SHUTDOWN.set()
        if self.cancels_start and not self.requested.is_set() and self._starting is not None:
            self._starting.cancel()
        self.requested.set()


async def serve(options: Options, shell: Mapping[str, str]) -> int:
    """The runtime until it is stopped; its exit code."""
    stop = Stop()
    try:
        return await compose(options, shell, stop)
    except CannotStart as exc:
        log.error("%s", exc)
        return 1
    except asyncio.CancelledError:
        if not stop.requested.is_set():
            raise
        log.info("stopped before serving")
        # What started is stopped, but a thread may still wait for a worker's first report, which a worker stopped by
        # the same Ctrl-C never sends (``services._worker_started``): leave without waiting for that thread.
        sys.stdout.flush()
        logging.shutdown()
        os._exit(130)


async def compose(options: Options, shell: Mapping[str, str], stop: Stop) -> int:
    """The composition root: pieces enter in order and leave in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        bootstrap = shell.get("KAFKA_BOOTSTRAP_SERVERS", "")
        broker = None
        if not bootstrap:
            DEFAULT_HOME.mkdir(parents=True, exist_ok=True)
            broker = EmbeddedBroker(log_path=DEFAULT_HOME / "broker.log")
            stack.callback(broker.stop)
            bootstrap = broker.start()
        services: dict[str, str] = {}
        if "UPLOAD_STAGING_URL" not in shell:
            s3 = LocalS3()
            stack.callback(s3.stop)
            services = s3.start()
        placements = resolve(options, shell, bootstrap, services)
        log.info("functions: %s", ", ".join(p.spec.name for p in placements))
        sock = stack.enter_context(bind(options))
        topics = topics_of(placements, options.partitions)
        await ensure_topics(bootstrap, topics, kafka_auth.client_options(placements[0].settings) if placements else {})
        await prepare_database(placements)
        await stack.enter_async_context(broker_watch(broker, topics))
        await build(placements, options.build_dir)
        retry = None if options.max_retries is None else RetryPolicy(max_retries=options.max_retries)
        kafka = [p for p in placements if p.spec.kafka]
        workers = [(p, n) for p in kafka if (n := worker_count(p, options.workers, options.partitions))]
        in_process = [p for p in placements if (p.spec.kafka or p.spec.schedules) and p not in [w for w, _ in workers]]
        try:
            await stack.enter_async_context(worker_processes(workers, bootstrap, retry, options.build_dir))
        except RuntimeError as exc:
            raise CannotStart(str(exc)) from None
        interval, build_dir = options.schedule_interval, options.build_dir
        await stack.enter_async_context(in_process_functions(in_process, bootstrap, retry, interval, build_dir))
        http = [(p.spec, p.environment) for p in placements if p.spec.routes]
        processes, instances = options.http_processes, options.http_instances
        stop.cancels_start = False  # the API answers as soon as it listens: a stop now lets it start, then stops all
        await stack.enter_async_context(http_service(http, sock, processes, instances, build_dir))
        url = f"http://{options.host}:{sock.getsockname()[1]}"
        if options.demo:
            from runtime.demo import run_demo_unless

            log.info("classifying the demo photos on %s", url)
            code = await run_demo_unless(stop.requested, url)
        else:
            log.info("serving on %s (open it in a browser; Ctrl-C to stop)", url)
            await stop.requested.wait()
            code = 0
        supervisor.SHUTDOWN.set()
        quiet = logging.DEBUG if options.demo else logging.INFO  # the demo ends with its table and what to do next
        log.log(quiet, "shutting down")
    log.log(quiet, "stopped")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    if argv is None:  # the command line: one /metrics for every process (called with arguments, this one's own)
        restart_with_shared_metrics(local_home() / "metrics")
    shell = dict(os.environ)
    if options.demo and "LOG_LEVEL" not in shell:  # every process of the demo, its functions' too, logs warnings
        shell["LOG_LEVEL"] = "WARNING"
        log.setLevel(logging.INFO)  # and these few lines saying what happens; the demo ends with its table
    configure_logging(settings=LogSettings.of(shell))
    return loops.run(serve(options, shell))


if __name__ == "__main__":
    sys.exit(main())
