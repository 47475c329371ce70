"""Reliability harness (issue 6, ADR 0013): a chaos scenario runner and an invariant checker that reads
DynamoDB and SQS directly. Test and local tooling only; nothing here ships in the Lambda asset."""
