"""Pix2Rep pretraining: the augmentations (shared with fine-tuning), the objectives that
combine the pixel losses, the slices a run draws from, its settings and the run itself.
"""
