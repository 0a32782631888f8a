"""Flower's Deployment Engine on real machines: the coordinator's SuperLink, the
sites' SuperNodes, TLS certificates, node registration, and the fast path that keeps
torch out of Flower's per-message ClientApp processes."""
