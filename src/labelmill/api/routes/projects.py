from __future__ import annotations

from fastapi import APIRouter, Response

from labelmill.api.deps import MediaDep, SessionDep, UserDep
from labelmill.api.models import Id, Page, ProjectIn, ProjectOut, ProjectPatch
from labelmill.services import projects as project_service
from labelmill.services import users as user_service
from labelmill.services.errors import Forbidden
from labelmill.services.types import Project

router = APIRouter(tags=["projects"])


def project_out(project: Project, role: str, item_count: int | None = None) -> ProjectOut:
    return ProjectOut(
        id=project.id,
        name=project.name,
        description=project.description,
        instructions=project.instructions,
        label_schema=project.label_schema,
        settings=project.settings,
        role=role,
        item_count=item_count,
        created_at=project.created_at,
    )


@router.get(
    "/projects",
    response_model=Page[ProjectOut],
    response_model_by_alias=True,
    summary="Projects the caller is a member of",
)
def list_projects(user: UserDep, session: SessionDep) -> Page[ProjectOut]:
    rows = project_service.list_projects(session, user)
    # Item counts are for managers, as in GET /projects/{id}.
    counts = project_service.project_item_counts(session, [p.id for p, r in rows if r == "manager"])
    return Page[ProjectOut](results=[project_out(p, r, counts.get(p.id)) for p, r in rows])


@router.post(
    "/projects",
    response_model=ProjectOut,
    status_code=201,
    response_model_by_alias=True,
    summary="Create a project (admin or creator role); the caller becomes its manager",
)
def create_project(body: ProjectIn, user: UserDep, session: SessionDep) -> ProjectOut:
    if not user_service.can_create_projects(user):
        raise Forbidden(
            "creating projects needs the admin or creator role "
            f"(an admin runs: labelmill user role {user.name} creator)"
        )
    project = project_service.create_project(
        session,
        body.name,
        body.label_schema,
        settings=body.settings,
        description=body.description,
        instructions=body.instructions,
        owner=user,
    )
    return project_out(project, "manager", 0)


@router.get(
    "/projects/{project_id}",
    response_model=ProjectOut,
    response_model_by_alias=True,
    summary="A project with its schema and settings",
)
def get_project(project_id: Id, user: UserDep, session: SessionDep) -> ProjectOut:
    project = project_service.project_for(session, user, project_id)
    role = project_service.role_in(session, user, project_id) or "annotator"
    count = project_service.project_item_count(session, project_id) if role == "manager" else None
    return project_out(project, role, count)


@router.patch(
    "/projects/{project_id}",
    response_model=ProjectOut,
    response_model_by_alias=True,
    summary="Change name, schema, instructions or settings (settings merge)",
)
def patch_project(project_id: Id, body: ProjectPatch, user: UserDep, session: SessionDep) -> ProjectOut:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    changes = body.model_dump(exclude_unset=True, by_alias=True)
    project_service.update_project(session, project, changes)
    return project_out(project, "manager", project_service.project_item_count(session, project_id))


@router.delete("/projects/{project_id}", status_code=204, summary="Delete a project and everything in it")
def delete_project(project_id: Id, user: UserDep, session: SessionDep, media: MediaDep) -> Response:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    project_service.delete_project(session, project, media=media)
    return Response(status_code=204)
