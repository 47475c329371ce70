"""The ingest function (`outbox.ingest.handler.handler`): HTTP request in, message and outbox entry out in one
transaction. Parsing (`requests`), validation, the service, and the Lambda handler."""
