from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from labelmill.api.deps import AdminDep, SessionDep
from labelmill.api.models import Id, Page, UserIn, UserOut, UserPatch
from labelmill.api.routes.auth import user_out
from labelmill.services import users as user_service
from labelmill.services.types import User

router = APIRouter(tags=["users"])


@router.get("/users", response_model=Page[UserOut], summary="List users (admin)")
def list_users(_: AdminDep, session: SessionDep) -> Page[UserOut]:
    rows = session.scalars(select(User).order_by(User.id))
    return Page[UserOut](results=[user_out(u) for u in rows])


@router.post("/users", response_model=UserOut, status_code=201, summary="Create a user (admin)")
def create_user(body: UserIn, _: AdminDep, session: SessionDep) -> UserOut:
    user = user_service.create_user(session, body.name, role=body.role, password=body.password)
    return user_out(user)


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Change a user's global role, or (de)activate them (admin)",
)
def patch_user(user_id: Id, body: UserPatch, _: AdminDep, session: SessionDep) -> UserOut:
    user = user_service.get_user(session, user_id)
    if body.role is not None:
        user_service.set_role(session, user, body.role)
    if body.is_active is not None:
        user.is_active = body.is_active
        session.flush()
    return user_out(user)
