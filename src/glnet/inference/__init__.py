"""Running GLNet over an image: the engine (global context + batched local
patches), scenes of huge images, streaming into a label store, the patch
grid and coarse-to-fine patch skipping."""
