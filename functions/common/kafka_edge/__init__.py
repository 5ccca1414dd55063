"""The Kafka edge of infer, collect and the publishers: event parsing, per-record outcomes, the producer and Kafka
authentication."""
