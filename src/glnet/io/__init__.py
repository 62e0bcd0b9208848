"""Images in and label masks out: lazy pyramids of huge images (JPEG, PNG,
TIFF, OME-Zarr), whole-image reading, pyramid writing and mask codecs."""
