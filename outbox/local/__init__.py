"""Local stand-ins for AWS (an embedded, serialized moto server). Needs the `local` extra; never imported
by the Lambda handlers."""
