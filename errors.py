"""The one exception type for mistakes a user can make (bad path, key, value, video, placement).

`run.py` turns any `UserError` into a single line `error: <message>` and exit code 2, so every
message must name the culprit (the file, the config key, the block) on its own.
"""


class UserError(Exception):
    """A failure caused by user input, reported as one line without a traceback."""
