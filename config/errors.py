"""Error type for invalid stack configuration."""


class ConfigError(ValueError):
    """Raised when the stack configuration is invalid.

    ``problems`` holds one message per problem; each names the offending item
    (for example ``mailstack:domains[1].users[0].quota``) and says how to fix it.
    """

    def __init__(self, problems: list[str]) -> None:
        """Build the error from a non-empty list of problem messages."""
        self.problems = list(problems)
        bullet = "\n  - "
        super().__init__("invalid stack configuration:" + bullet + bullet.join(self.problems))
