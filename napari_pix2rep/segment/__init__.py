"""From painted slices (or none) to masks: the Segment recipe (recipe.py) with its
settings, and its steps: heart localisation, registration that carries painted slices,
linear probe, fine-tuning, the supervised default model, prediction and clean-up; the
dock's segmentation session.
"""
