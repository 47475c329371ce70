"""Test support shipped with the library: fault injection and the strict-contract hook.

For tests, benchmarks and local runs only; the Lambda handlers never import this package.
"""
