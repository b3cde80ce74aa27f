"""The evaluation protocols of docs/benchmarks.md (few-slice, annotation loop, zero clicks) on
ACDC-style data, and the synthetic phantom the tests and smoke benchmarks use.
"""
