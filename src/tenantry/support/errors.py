"""The base of the platform's own errors, carrying what ``tenantry`` exits with.

A command that ends on one of these prints its message and exits with its ``exit_code``:
1 when an operation or a check failed, 2 when the input was refused before anything was
written (an invalid or unknown slug, a home that is not one, an existing user). The CLI
maps nothing by hand: a new error picks its code by picking its base.

Errors a request answers (a file too large, a store away) are not here: the web layer
turns those into HTTP answers in the one error shape.
"""


class PlatformError(Exception):
    """Something the platform could not do; ``tenantry`` exits 1."""

    exit_code = 1


class InputRefused(PlatformError):
    """The input was refused before anything was written; ``tenantry`` exits 2."""

    exit_code = 2
