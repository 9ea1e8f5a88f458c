"""Adapters over NATS: the event bus on core subjects, the queue on JetStream (issue 21)."""
