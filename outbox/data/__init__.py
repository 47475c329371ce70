"""Data access: the one place that builds DynamoDB transactions, runs them and decodes their cancellation
reasons into typed outcomes, for ingest, the relay and the operator commands."""
