"""The one exception type that means "the user asked for something we cannot do".

The CLI prints its message on one line and exits with status 2; anything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, a missing file, a checkpoint that is not ours: explain, don't crash."""
