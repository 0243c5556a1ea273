"""The error every entry point reports as one line: something the user named is unusable.

``UserError`` is raised for a bad value, file, folder or checkpoint that the user can fix; its
message names which (path, key or value) and what was expected. The entry points turn it, and
``OSError``, into one line on stderr and exit status 2 (``hpe_jax.cli``).
"""

from __future__ import annotations


class UserError(ValueError):
    """An input the user can fix; the message is one line naming it and what was expected.

    A ValueError, so callers that catch a bad value catch it too."""
