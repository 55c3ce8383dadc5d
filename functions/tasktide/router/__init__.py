"""The local Knative Eventing runtime: reads ``eventing/`` + ``knative/`` YAML and emulates Brokers,
Triggers, KafkaSources, KafkaSinks and PingSources in-process (embedded) or against real Kafka."""
