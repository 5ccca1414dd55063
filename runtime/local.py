"""``python -m runtime.local``: the whole system on one machine, driven by ``template.yaml``.

Embedded by default (Tansu broker child process, SQLite, blob folder); external with ``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL`` and ``BLOB_URL`` in the environment (e.g. the ``local/`` docker compose stack).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Iterable, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path

from functions.common import loops, resources
from functions.common.db import DatabaseStore
from functions.common.settings import DEFAULT_HOME, get_settings

from .broker import EmbeddedBroker, ensure_topics, keep_alive
from .http import Gateway
from .http_server import http_process_main, listening_socket, server_for
from .kafka_esm import RetryPolicy
from .loader import load_handler, load_shutdown
from .logs import configure_logging
from .schedule import Schedule
from .template import FunctionSpec, Template, load_template
from .worker import WORKER_ENV, mappings_for, supervise, worker_main

log = logging.getLogger("runtime.local")

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runtime.local", description=__doc__.splitlines()[0])
    p.add_argument("--template", default=str(ROOT / "template.yaml"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes per Kafka function marked LocalWorkers (default: cores // INFER_THREADS)",
    )
    p.add_argument(
        "--http-processes",
        type=int,
        default=1,
        metavar="N",
        help="processes serving the HTTP functions on the one port (SO_REUSEPORT; default 1)",
    )
    p.add_argument("--partitions", type=int, default=4, help="partitions of topics the runtime creates")
    p.add_argument(
        "--schedule-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run every Schedule event at this interval instead of its rate() (e.g. to test the sweeper)",
    )
    p.add_argument("--max-retries", type=int, default=None, help="retries of a failing batch before the DLQ")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="template parameter override")
    p.add_argument(
        "--functions", default=None, metavar="NAME,...", help="run only these template functions (default: all)"
    )
    p.add_argument("--demo", action="store_true", help="upload the demo photos, print their top-k, then exit")
    return p.parse_args(argv)


def parameters_from_environment(template: Template, user_env: dict[str, str]) -> dict[str, str]:
    """An env var the user set overrides the template Parameter it stands for (``REQUEST_TOPIC`` →
    ``RequestTopic``), so event sources and function environments stay consistent."""
    return {
        parameter: user_env[var]
        for spec in template.functions
        for var, parameter in spec.env_parameters.items()
        if var in user_env
    }


def apply_environment(functions: Iterable[FunctionSpec], user_env: dict[str, str]) -> dict[str, str]:
    """The functions' template environment, under what the user set; returns what was added."""
    added: dict[str, str] = {}
    for spec in functions:
        for key, value in spec.env.items():
            if key in user_env:
                continue
            if key in added and added[key] != value:
                log.warning(
                    "%s sets %s=%s, another function %s; the first wins locally", spec.name, key, value, added[key]
                )
                continue
            added[key] = value
    os.environ.update(added)
    get_settings.cache_clear()
    resources.reset_all()
    return added


def worker_count(spec: FunctionSpec, requested: int | None) -> int:
    if spec.local_workers is None:
        return 0  # runs in-process
    if requested is not None:
        return max(1, requested)
    if spec.local_workers != "auto":
        return max(1, int(spec.local_workers))
    threads = max(1, get_settings().infer_threads)
    return max(1, (os.cpu_count() or 1) // threads)  # processes x threads never exceeds the cores


async def serve(
    template: Template, bootstrap: str, args: argparse.Namespace, broker: EmbeddedBroker | None = None
) -> int:
    settings = get_settings()
    try:  # bound before anything starts, so a taken port fails at once
        sock = listening_socket(args.host, args.port, shared=args.http_processes > 1)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    kafka_fns = [f for f in template.functions if f.kafka]
    topics = {s.topic: args.partitions for f in kafka_fns for s in f.kafka}
    for name in (settings.request_topic, settings.result_topic, settings.dlq_topic):
        topics.setdefault(name, args.partitions)
    await ensure_topics(bootstrap, topics)
    store = DatabaseStore(resources.database_url())
    await store.init_schema()
    await store.close()
    log.info("database %s, blobs %s", store.url.split("@")[-1], settings.blob_url)

    retry = None if args.max_retries is None else RetryPolicy(max_retries=args.max_retries)
    processes: list[BaseProcess] = []
    tasks: list[asyncio.Task[None]] = []
    if broker is not None:
        tasks.append(asyncio.create_task(keep_alive(broker, topics)))
    spawn = multiprocessing.get_context("spawn")
    for key, value in WORKER_ENV.items():  # inherited by the worker processes spawned below, from their start
        os.environ.setdefault(key, value)
    started: Queue[tuple[int, str | None]] = spawn.Queue()
    expected: list[str] = []
    for spec in kafka_fns:
        count = worker_count(spec, args.workers)
        if count > args.partitions:
            log.warning(
                "%s: %d workers but %d partitions; using %d (more would idle)",
                spec.name,
                count,
                args.partitions,
                args.partitions,
            )
            count = args.partitions
        if count == 0:
            tasks += [
                asyncio.create_task(supervise(m)) for m in mappings_for(spec, bootstrap, settings.dlq_topic, retry)
            ]
            continue
        for index in range(count):
            proc = spawn.Process(
                target=worker_main,
                name=f"{spec.name}#{index}",
                daemon=True,
                args=(spec, dict(os.environ), bootstrap, settings.dlq_topic, retry, index, started),
            )
            proc.start()
            processes.append(proc)
            expected.append(proc.name)
        log.info("%s: %d worker processes", spec.name, count)
    failure = await workers_started(started, expected)
    if failure is not None:
        log.error("%s", failure)
        for worker in processes:
            worker.kill()
        return 1

    for spec in template.functions:
        if spec.schedules:
            handler, hook = load_handler(spec), load_shutdown(spec)
            tasks += [
                asyncio.create_task(Schedule(spec, source, handler, args.schedule_interval, hook).run())
                for source in spec.schedules
            ]

    gateway = Gateway(template.functions)
    for (method, path), _ in sorted(gateway.routes.items(), key=lambda kv: kv[0][1]):
        log.info("route %-4s %s", method, path)
    http_functions = tuple(f for f in template.functions if f.routes)
    extra_http = [(spawn.Event(), index) for index in range(1, args.http_processes if http_functions else 1)]
    port = sock.getsockname()[1]
    for ready, index in extra_http:
        proc = spawn.Process(
            target=http_process_main,
            name=f"http#{index}",
            daemon=True,
            args=(http_functions, dict(os.environ), args.host, port, ready),
        )
        proc.start()
        processes.append(proc)
    for ready, _ in extra_http:  # all of them accept before the port answers at all (clients keep connections)
        if not await asyncio.to_thread(ready.wait, 120):
            log.error("an HTTP process did not start within 120 s")
    if extra_http:
        log.info("HTTP: %d processes on %s:%d", len(extra_http) + 1, args.host, args.port)
    server = server_for(gateway)
    server_task = asyncio.create_task(server.serve(sockets=[sock]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not server.started:
        if server_task.done():
            await server_task
            return 1
        await asyncio.sleep(0.05)
    base_url = f"http://{args.host}:{args.port}"
    log.info("serving on %s (Ctrl-C to stop)", base_url)
    code = 0
    try:
        if args.demo:
            from .demo import run_demo

            demo = asyncio.create_task(run_demo(base_url))
            await asyncio.wait([demo, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
            if demo.done():
                items = demo.result()
                code = 0 if all(i["status"] == "done" for i in items) else 1
            else:
                demo.cancel()
        else:
            await stop.wait()
    finally:
        log.info("shutting down")
        server.should_exit = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(server_task, *tasks, return_exceptions=True)
        await gateway.shutdown()
        for worker in processes:
            worker.terminate()
        for worker in processes:
            await asyncio.to_thread(worker.join, 10)
            if worker.is_alive():
                worker.kill()
    return code


async def workers_started(
    started: Queue[tuple[int, str | None]], names: Sequence[str], timeout_s: float = 600.0
) -> str | None:
    """Wait until every worker ran its function's init; the first failure (e.g. an unusable model), or None.
    Nothing is served before, so a request is never accepted by a system that cannot classify it."""
    for _ in names:
        try:
            _, failure = await asyncio.to_thread(started.get, True, timeout_s)
        except queue.Empty:
            return f"workers did not start within {timeout_s:.0f} s"
        if failure is not None:
            return f"cannot start: {failure}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    user_env = dict(os.environ)
    broker: EmbeddedBroker | None = None
    bootstrap = user_env.get("KAFKA_BOOTSTRAP_SERVERS")
    try:
        if not bootstrap:
            DEFAULT_HOME.mkdir(parents=True, exist_ok=True)
            broker = EmbeddedBroker(log_path=DEFAULT_HOME / "broker.log")
            bootstrap = broker.start()
        overrides = parameters_from_environment(load_template(args.template), user_env)
        overrides.update(kv.split("=", 1) for kv in args.param)
        overrides["KafkaBootstrapServers"] = bootstrap
        template = load_template(args.template, overrides)
        if args.functions:
            template = template.only(args.functions.split(","))
        added = apply_environment(template.functions, user_env)
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        get_settings.cache_clear()
        log.info("functions: %s", ", ".join(f.name for f in template.functions))
        log.info("environment from template: %s", ", ".join(f"{k}={v}" for k, v in sorted(added.items())))
        return loops.run(serve(template, bootstrap, args, broker))
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
