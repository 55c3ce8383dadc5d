"""Events on the wire: the CloudEvents codec, the event catalogue, the transactional outbox and its relay,
the Kafka adapter, the SSE hub that follows `task-updates`, and dead-letter replay."""
