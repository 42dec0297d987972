"""One exception root for every format: bad bytes from outside, never a programming error."""


class FormatError(ValueError):
    """Data from outside is malformed, unsigned, oversized or otherwise not acceptable.

    The message says what is wrong in words a user can act on.
    """


class SignatureError(FormatError):
    """A signature does not verify with the key it claims."""
