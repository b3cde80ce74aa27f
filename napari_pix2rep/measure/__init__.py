"""Numbers from masks: DICE, volumes, ejection fraction, the volume curve and its CSV, PNG
and HTML report, and which layers the Measures tab offers. No torch.
"""
