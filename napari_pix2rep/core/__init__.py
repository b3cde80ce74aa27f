"""Plain facts every layer shares, no torch, no files: the classes (labels and names), the
progress protocol of long operations, and the named choices the CLI and the dock offer.
The bottom layer: imports nothing else of the package.
"""
