"""Gettext plumbing for user-facing text.

Code marks a message with `N_` where it is defined and translates it where it is shown, in the
recipient's locale: a reason produced by `registry` is rendered later for a Spanish or a
Quechua phone.
"""

from __future__ import annotations


def N_(message: str) -> str:
    """Mark a message for extraction without translating it here."""
    return message
