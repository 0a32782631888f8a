"""The cost of privacy: one epoch of DP-SGD against non-private training, same process."""
