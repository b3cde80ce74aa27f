"""Losses, one per module; each docstring gives the formula, the paper and the shapes."""
