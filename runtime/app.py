"""What the emulator knows of the app, in one place: every other ``runtime/`` module imports the app through here.

The rest of ``runtime/`` plays AWS (API Gateway, Lambda's execution environments and invocations, the event-source
mappings, the schedule, the broker) and would serve another app with other answers here: how settings are read
from a function's environment and where the local defaults live, the event loop the handlers run on, the Kafka
client options a function's settings ask for, the schema to prepare, how a dead letter is told apart, and which
routes are health probes (served by an environment of their own, so a probe never queues behind uploads).
"""

from __future__ import annotations

from functions.common import loops
from functions.common.errors import Misconfigured
from functions.common.kafka_edge import auth as kafka_auth
from functions.common.kafka_edge.outcomes import dead_letter_headers, source_of
from functions.common.settings import (
    DEFAULT_HOME,
    Settings,
    local_blob_url,
    local_database_url,
    settings_from,
    use_function_environment,
)
from functions.common.store import dependency_errors, open_store

PROBE_ROUTES = frozenset({("GET", "/health")})

__all__ = [
    "DEFAULT_HOME",
    "PROBE_ROUTES",
    "Misconfigured",
    "Settings",
    "dead_letter_headers",
    "dependency_errors",
    "kafka_auth",
    "local_blob_url",
    "local_database_url",
    "loops",
    "open_store",
    "settings_from",
    "source_of",
    "use_function_environment",
]
