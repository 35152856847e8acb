"""Everything after COMMIT: the outbox relay, where it delivers (Kafka, or the in-process handlers in local mode), the
Kafka client settings, and the workers' consume → handle → commit loop with the process around it."""
