from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from labelmill.api.deps import SessionDep, UserDep
from labelmill.api.models import Id, NewTokenOut, Page, TokenIn, TokenOut
from labelmill.services import users as user_service
from labelmill.services.types import ApiToken

router = APIRouter(tags=["tokens"])


@router.get(
    "/tokens",
    response_model=Page[TokenOut],
    summary="The caller's API tokens (secrets are never shown again)",
)
def list_tokens(user: UserDep, session: SessionDep) -> Page[TokenOut]:
    rows = session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.kind == "api").order_by(ApiToken.id)
    )
    return Page[TokenOut](results=[TokenOut.model_validate(r, from_attributes=True) for r in rows])


@router.post(
    "/tokens", response_model=NewTokenOut, status_code=201, summary="Create an API token for the caller"
)
def create_token(body: TokenIn, user: UserDep, session: SessionDep) -> NewTokenOut:
    secret, row = user_service.create_token(session, user, name=body.name)
    session.refresh(row)
    return NewTokenOut(token=secret, **TokenOut.model_validate(row, from_attributes=True).model_dump())


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token")
def delete_token(token_id: Id, user: UserDep, session: SessionDep) -> Response:
    user_service.revoke_token(session, user, token_id)
    return Response(status_code=204)
