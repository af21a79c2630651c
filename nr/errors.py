"""Errors the engine reports as a clear one-line message instead of a traceback."""


class NrError(Exception):
    """An expected failure: the message names the host, file or field and the cause."""


class InventoryError(Exception):
    """The inventory is invalid; ``issues`` holds one message per problem (exit 2, nothing touched)."""

    def __init__(self, issues: list[str]) -> None:
        super().__init__("\n".join(issues))
        self.issues = issues
