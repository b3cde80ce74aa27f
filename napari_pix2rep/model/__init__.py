"""The network and its files: the U-Net (nets/), the segmenter (backbone + head), model
files (loaded with ``weights_only=True``), preprocessing the network sees, devices and
CPU threads.
"""
