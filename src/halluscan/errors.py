"""The one exception type that the CLI turns into a one-line message."""


class HalluscanError(Exception):
    """Bad input or an unusable resource; the message says what and what to do."""
