"""Benchmarks: what a relayed message costs (calls, DynamoDB units, SQS requests, dollars) for our relay
against a naive one-message-at-a-time relay, and a modeled drain rate on AWS (issue 7, ADR 0012).

Run `python -m bench`; results go to stdout and `bench/results/latest.{md,json}`. The doorbell's modeled
AWS latency and idle cost (ADR 0017): `python -m bench.latency_model`, to `bench/results/latency-model.md`.
"""
