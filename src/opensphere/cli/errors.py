"""A CLI error is one line for the user and exit status 1."""


class CliError(Exception):
    pass
