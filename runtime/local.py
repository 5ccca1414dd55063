"""``python -m runtime.local``: the whole system on one machine, driven by ``template.yaml``.

Embedded by default (Tansu broker child process, SQLite, blob folder); external with ``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL`` and ``BLOB_URL`` in the environment (e.g. the ``local/`` docker compose stack).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from functions.common import loops
from functions.common.kafka_edge import auth as kafka_auth
from functions.common.settings import DEFAULT_HOME, settings_from
from functions.common.store import open_store

from .broker import EmbeddedBroker, ensure_topics
from .environment import ROOT, declared_names, function_environment, local_home, local_parameters
from .kafka_esm import RetryPolicy
from .local_s3 import LocalS3
from .logs import configure_logging
from .services import Placement, broker_watch, http_service, in_process_functions, worker_count, worker_processes
from .shared_metrics import restart_with_shared_metrics
from .sockets import listening_socket
from .template import load_template

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


async def prepare_database(placements: Sequence[Placement]) -> str | None:
    """Create the tables of every database the functions use (they would on first connect; this fails early);
    what is wrong when a database cannot be used."""
    for url in {p.settings.database_url for p in placements if p.settings.database_url}:
        store = open_store(url)
        try:
            await store.init_schema()
        except sqlite3.DatabaseError as exc:
            path = url.split(":///", 1)[-1]
            return (
                f"the database file {path} cannot be used ({exc}): move it away (an empty one is created) "
                "or set DATABASE_URL"
            )
        finally:
            await store.close()
        log.info("database %s", url.split("@")[-1])
    return None


async def serve(options: Options, shell: Mapping[str, str]) -> int:
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
        try:  # bound before anything starts, so a taken port fails at once
            sock = stack.enter_context(listening_socket(options.host, options.port, shared=options.http_processes > 1))
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", options.host, options.port, exc)
            return 1
        topics = topics_of(placements, options.partitions)
        await ensure_topics(bootstrap, topics, kafka_auth.client_options(placements[0].settings) if placements else {})
        if (problem := await prepare_database(placements)) is not None:
            log.error("%s", problem)
            return 1
        await stack.enter_async_context(broker_watch(broker, topics))
        retry = None if options.max_retries is None else RetryPolicy(max_retries=options.max_retries)
        kafka = [p for p in placements if p.spec.kafka]
        workers = [(p, n) for p in kafka if (n := worker_count(p, options.workers, options.partitions))]
        in_process = [p for p in placements if (p.spec.kafka or p.spec.schedules) and p not in [w for w, _ in workers]]
        try:
            await stack.enter_async_context(worker_processes(workers, bootstrap, retry))
        except RuntimeError as exc:
            log.error("%s", exc)
            return 1
        interval, build_dir = options.schedule_interval, options.build_dir
        await stack.enter_async_context(in_process_functions(in_process, bootstrap, retry, interval, build_dir))
        http = [(p.spec, p.environment) for p in placements if p.spec.routes]
        processes, instances = options.http_processes, options.http_instances
        await stack.enter_async_context(http_service(http, sock, processes, instances, build_dir))
        base_url = f"http://{options.host}:{sock.getsockname()[1]}"
        log.info("serving on %s (Ctrl-C to stop)", base_url)
        code = await until_stopped(base_url if options.demo else None)
        log.info("shutting down")
        return code


async def until_stopped(demo_url: str | None) -> int:
    """Ctrl-C / SIGTERM, or the demo's end (exit code 1 if a demo photo failed)."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if demo_url is None:
        await stop.wait()
        return 0
    from .demo import run_demo

    demo = asyncio.create_task(run_demo(demo_url))
    await asyncio.wait([demo, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    if not demo.done():
        demo.cancel()
        return 0
    return 0 if all(item["status"] == "done" for item in demo.result()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    if argv is None:  # the command line: one /metrics for every process (called with arguments, this one's own)
        restart_with_shared_metrics(local_home() / "metrics")
    configure_logging()
    return loops.run(serve(options, dict(os.environ)))


if __name__ == "__main__":
    sys.exit(main())
