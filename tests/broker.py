"""The `tansu` Kafka-protocol broker fixture (filled in by the events work)."""
