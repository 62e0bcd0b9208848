"""Data for training and testing: what training reads (exports and
DeepGlobe folders) and the synthetic land-cover scenes."""
