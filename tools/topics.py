"""``python -m tools.topics``: create the service's Kafka topics on a cluster, the deploy-time step.

Lambda's event sources do not create topics, and a cluster with ``auto.create.topics.enable=false`` (MSK's
default) refuses to produce to a missing one. This command creates what ``python -m runtime.local`` creates for
itself, with the same code (``runtime.kafka.broker.ensure_topics``) and the same authentication as the functions
(``functions.common.kafka_edge.auth``); existing topics are left as they are, so it is safe to run on every deploy.

    python -m tools.topics --bootstrap-servers b-1.example:9098,b-2.example:9098 --auth MSK_IAM \\
        --region eu-west-1 --partitions 8 --replication-factor 3
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from runtime.app import Misconfigured, Settings, kafka_auth, loops
from runtime.kafka.broker import ensure_topics
from runtime.logs import configure_logging

log = logging.getLogger(__name__)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    p = argparse.ArgumentParser(prog="python -m tools.topics", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap-servers", required=True, help="comma-separated brokers (KafkaBootstrapServers)")
    p.add_argument("--auth", default="PLAINTEXT", choices=list(kafka_auth.KafkaAuth), help="(KafkaAuth)")
    p.add_argument("--secret-arn", default="", help="SASL_SCRAM_512: the credentials secret (KafkaSecretArn)")
    p.add_argument("--region", default="", help="MSK_IAM: the cluster's region")
    p.add_argument("--ca-file", default="", help="TLS: a private CA bundle")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the request and result topics")
    p.add_argument("--dlq-partitions", type=int, default=1, help="partitions of the dead-letter topic")
    p.add_argument("--replication-factor", type=int, default=3, help="3 on a production cluster (default)")
    p.add_argument("--request-topic", default=defaults.request_topic)
    p.add_argument("--result-topic", default=defaults.result_topic)
    p.add_argument("--dlq-topic", default=defaults.dlq_topic)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging("topics")
    for name in ("runtime.kafka.broker", __name__):  # what was created is this command's output
        logging.getLogger(name).setLevel(logging.INFO)
    args = parse(argv)
    settings = Settings(
        kafka_auth=args.auth, kafka_secret_arn=args.secret_arn, aws_region=args.region, kafka_ca_file=args.ca_file
    )
    topics = {
        args.request_topic: args.partitions,
        args.result_topic: args.partitions,
        args.dlq_topic: args.dlq_partitions,
    }
    try:
        options = kafka_auth.client_options(settings)
        actual = loops.run(ensure_topics(args.bootstrap_servers, topics, options, args.replication_factor))
    except Misconfigured as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:
        log.error("cannot create topics on %s: %s: %s", args.bootstrap_servers, type(exc).__name__, exc)
        return 1
    log.info("topics ready on %s: %s", args.bootstrap_servers, ", ".join(f"{t}({n})" for t, n in actual.items()))
    for topic, asked in topics.items():
        if actual.get(topic, asked) != asked:
            log.warning(
                "%s has %d partitions, not the %d asked: an existing topic is left as it is (its partitions bound "
                "how many consumers share it; add some with kafka-topics.sh --alter)",
                topic,
                actual[topic],
                asked,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
