"""Plain torch modules: nothing here imports Lightning, so inference does not need it."""
