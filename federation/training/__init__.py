"""Training at a site, with no Flower in it: DP-SGD (Opacus, and a vectorized engine
that runs the same mechanism), per-sample clipping, Poisson sampling, the models, the
feature encoding from a data dictionary's public ranges, and the metrics."""
