"""What the user painted, no torch: painted and background-only slices (the annotation
convention), edits and corrections, the annotation-loop rules (which slices are carried
to which phase) and the crash-recovery autosave of annotation layers.
"""
