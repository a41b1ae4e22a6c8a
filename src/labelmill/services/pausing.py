"""Who may pause an annotator, and when: one place for the rule.

A manager's decision (pause or resume) sticks until a manager changes it: automatic pausing
(spammer detection, falling gold accuracy) never overrides it. Automatic pausing happens only
when the project's ``auto_pause`` setting is on; the evidence (spam score and reasons) is kept
either way, so the manager sees it in the annotator statistics.
"""

from __future__ import annotations

from typing import Literal

from labelmill.services.projects import ProjectSettings
from labelmill.store.models import Member

MANAGER = "manager"
AUTO = "auto"

#: What triggered an automatic pause; ``gold`` covers qualification and running gold accuracy.
Cause = Literal["spam", "gold"]


def manager_decides(member: Member, paused: bool, reason: str | None = None) -> None:
    """A manager pauses or resumes ``member``; automatic pausing leaves the decision alone
    from now on. Resuming also vouches for the annotator's qualification."""
    member.paused = paused
    member.pause_reason = (reason or "paused by a manager") if paused else None
    member.paused_by = MANAGER
    if not paused:
        member.qualification = "qualified"


def may_auto_pause(member: Member, settings: ProjectSettings) -> bool:
    """Whether the quality engine may pause ``member`` now."""
    return (
        settings.auto_pause
        and member.role == "annotator"
        and not member.paused
        and member.paused_by != MANAGER
    )


def auto_pause(member: Member, settings: ProjectSettings, reason: str) -> bool:
    """Pause ``member`` for ``reason`` if the rules allow it; True when they were paused."""
    if not may_auto_pause(member, settings):
        return False
    member.paused = True
    member.pause_reason = reason
    member.paused_by = AUTO
    return True
