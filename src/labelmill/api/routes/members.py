from __future__ import annotations

from fastapi import APIRouter, Response

from labelmill.api.deps import SessionDep, UserDep
from labelmill.api.models import Id, MemberIn, MemberOut, MemberPatch, Page
from labelmill.services import pausing
from labelmill.services import projects as project_service
from labelmill.services import users as user_service
from labelmill.services.types import Member, User

router = APIRouter(tags=["members"])


def member_out(member: Member, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        name=user.name,
        role=member.role,
        paused=member.paused,
        pause_reason=member.pause_reason,
        paused_by=member.paused_by,
    )


@router.get(
    "/projects/{project_id}/members", response_model=Page[MemberOut], summary="Members and their roles"
)
def list_members(project_id: Id, user: UserDep, session: SessionDep) -> Page[MemberOut]:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    rows = project_service.list_members(session, project)
    return Page[MemberOut](results=[member_out(m, u) for m, u in rows])


@router.post(
    "/projects/{project_id}/members",
    response_model=MemberOut,
    status_code=201,
    summary="Add a member (or change their role)",
)
def add_member(project_id: Id, body: MemberIn, user: UserDep, session: SessionDep) -> MemberOut:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    # Only users the caller may already see (an admin: anyone): no listing of accounts by name.
    target = user_service.visible_user(session, user, body.user)
    member = project_service.add_member(session, project, target, body.role)
    return member_out(member, target)


@router.patch(
    "/projects/{project_id}/members/{user_id}",
    response_model=MemberOut,
    summary="Change a member's role, or pause / resume them",
)
def patch_member(
    project_id: Id, user_id: Id, body: MemberPatch, user: UserDep, session: SessionDep
) -> MemberOut:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    member = project_service.get_member(session, project, user_id)
    if body.role is not None:
        member.role = body.role
    if body.paused is not None:
        # A manager's decision sticks: automatic pausing never overrides it.
        pausing.manager_decides(member, body.paused, body.pause_reason)
    session.flush()
    return member_out(member, user_service.get_user(session, user_id))


@router.delete("/projects/{project_id}/members/{user_id}", status_code=204, summary="Remove a member")
def remove_member(project_id: Id, user_id: Id, user: UserDep, session: SessionDep) -> Response:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    project_service.remove_member(session, project, user_id)
    return Response(status_code=204)
