"""The kernel every part shares: the domain (statuses, ids, timestamps), the table schema, settings, errors,
AWS clients, exact JSON numbers and SQS error codes. Imports nothing else of the project."""
