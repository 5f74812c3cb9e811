"""Errors a user can cause. Each says, in words fit for an operator's terminal or a log, what
was asked and why it cannot be done; a voice flow maps the class to a prompt. None ever
carries a PIN or a password."""


class ServiceError(Exception):
    """A request that cannot be done as asked; nothing was changed."""


class UnknownSubscriber(ServiceError):
    def __init__(self, number: str) -> None:
        super().__init__(f"no subscriber {number}")


class NotAvailable(ServiceError):
    """A data SIM: no calls, no voice services."""

    def __init__(self, number: str) -> None:
        super().__init__(f"{number} is a data SIM: voice services are not available")


class NotSubscribed(ServiceError):
    """Nuisance-call blocking on a type A line without the paid option."""

    def __init__(self, number: str) -> None:
        super().__init__(
            f"{number} is a type A line without the nuisance-call blocking option")


class InvalidNumber(ServiceError):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)


class OwnNumber(ServiceError):
    def __init__(self, number: str, what: str) -> None:
        super().__init__(f"{number} cannot be its own {what}")


class InvalidValue(ServiceError):
    pass


class NoDestination(ServiceError):
    def __init__(self, number: str) -> None:
        super().__init__(f"{number} has no forwarding destination: give one to start forwarding")


class MailboxFull(ServiceError):
    def __init__(self, number: str, limit: int) -> None:
        super().__init__(f"the mailbox of {number} is full ({limit} messages)")


class NoSuchMessage(ServiceError):
    def __init__(self, number: str, message_id: int) -> None:
        super().__init__(f"{number} has no voicemail message {message_id}")
