"""Operator actions on the tables (requeue, skip, stats, clear-owed-ttl): what the `outbox` command runs and
what the operator IAM policy allows."""
