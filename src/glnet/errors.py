class GLNetError(Exception):
    """An expected problem with the user's input, reported as one line."""
