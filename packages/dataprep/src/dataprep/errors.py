"""The one exception type a user can cause and fix.

Any stage raises it."""


class DataprepError(Exception):
    """Bad input or options. The CLI prints it as a single line (no traceback) and exits non-zero,
    so the message must name the file, row and field where there is one, and say what to do."""
