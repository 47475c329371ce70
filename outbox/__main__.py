"""`python -m outbox`: the `outbox` command (for a venv whose scripts are not on PATH)."""

from outbox.cli import main

main()
