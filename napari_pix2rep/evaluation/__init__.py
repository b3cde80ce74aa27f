"""The evaluation protocols of DESIGN.md (few-slice, annotation loop, zero clicks) on
ACDC-style data, and the synthetic phantom the tests and smoke benchmarks use.
"""
