"""Who a request's caller is as a person: the run's starter (``by`` of a start) and who answers
a form (``by`` and ``groups`` of a submission).

Checked once the object the request names was found (another project's answers 404 first).
With credentials, they come from the credentials: a token's subject and groups claim, an API
key's name. The body may repeat the same ``by`` and say nothing else; a different ``by``, or
``groups`` (which a key cannot vouch for), is refused with a pointer at the field, so no reviewer
answers an approval in another's name. Without authentication (no key exists yet, on loopback)
the body says who it is, as it always did.
"""

from __future__ import annotations

from app.auth import context
from app.errors import ErrorDetail, RequestInvalid

FROM_CREDENTIALS = "from_credentials"  # the problem's code for a field the credentials fill


def starter(by: str | None) -> str | None:
    """Who starts a run."""
    person = context.principal().person
    if person is None:
        return by
    _refuse([_mismatch(by, person)] if by not in (None, person) else [])
    return person


def answerer(by: str | None, groups: list[str]) -> tuple[str | None, list[str]]:
    """Who answers a form, and the groups they are in."""
    principal = context.principal()
    person = principal.person
    if person is None:
        return by, groups
    problems = [_mismatch(by, person)] if by not in (None, person) else []
    if groups:
        problems.append(
            _problem(
                "groups",
                "your groups come from your credentials (a token's groups claim); leave groups out",
            )
        )
    _refuse(problems)
    return person, sorted(principal.groups)


def _mismatch(by: str | None, person: str) -> ErrorDetail:
    return _problem(
        "by", f"who you are comes from your credentials ({person!r}, not {by!r}); leave by out"
    )


def _problem(field: str, message: str) -> ErrorDetail:
    return ErrorDetail(f"/{field}", message, FROM_CREDENTIALS)


def _refuse(problems: list[ErrorDetail]) -> None:
    if problems:
        raise RequestInvalid(problems)
