"""Networks: the dense U-Net backbone and the small heads put on top of it."""
