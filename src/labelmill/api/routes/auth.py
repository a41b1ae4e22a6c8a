from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response

from labelmill.api.deps import SESSION_COOKIE, SessionDep, UserDep
from labelmill.api.models import LoginIn, UserOut
from labelmill.services import users as user_service

router = APIRouter(tags=["auth"])


def user_out(user: object) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/auth/login", response_model=UserOut, summary="Log in with a password; sets the session cookie")
def login(body: LoginIn, request: Request, response: Response, session: SessionDep) -> UserOut:
    lifetime = request.app.state.settings.session_seconds
    secret, user = user_service.login(session, body.name, body.password, lifetime=timedelta(seconds=lifetime))
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=lifetime,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return user_out(user)


@router.post("/auth/logout", status_code=204, summary="End the web session")
def logout(request: Request, session: SessionDep) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        user_service.revoke_secret(session, secret)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=UserOut, summary="The calling user")
def me(user: UserDep) -> UserOut:
    return user_out(user)
