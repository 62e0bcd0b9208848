"""Where labels live after inference: the OME-Zarr label store (edits,
undo, reviewed regions) and the export of its reviewed regions as tiles."""
