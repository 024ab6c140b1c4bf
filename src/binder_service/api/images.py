"""The native API's images: those the caller built (admins: all), and deleting one's own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from .deps import ImagesDep, UserDep
from .models import ErrorBody

router = APIRouter(prefix="/api/v1/images", tags=["images"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 502, 503, 504)
}
# An image reference as images.image_name makes them, `<name>:<tag>` (the tag as docker's rule says).
IMAGE_PATTERN = r"^[^\s@]+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
ImageRef = Annotated[
    str,
    Path(
        pattern=IMAGE_PATTERN,
        description="The image's full name with its tag, as `image` in the list shows it (`/` as is).",
        examples=["127.0.0.1:5055/binder/git-https-github-com-org-repo-4fc4767166:1a2b3c4d5e6f"],
    ),
]


class ImagePublic(BaseModel):
    # `images.admin.ImageInfo`, field for field (tests/api/test_models.py holds them equal); no docstring,
    # which would change the OpenAPI document.
    model_config = ConfigDict(from_attributes=True)

    image: str
    provider: str
    repository: str
    built_at: datetime
    last_requested_at: datetime
    requesters: list[str]


class ImageList(BaseModel):
    images: list[ImagePublic]


class ImageDeleted(BaseModel):
    image: str
    outcome: Literal["deleted", "already_gone", "kept_shared"]


@router.get("", responses=_ERRORS)
async def list_images(
    user: UserDep, images: ImagesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> ImageList:
    """Images the service built that you asked for (admins: all), most recently requested first."""
    found = await images.list(user, limit=limit)
    return ImageList(images=[ImagePublic.model_validate(i) for i in found])


@router.delete("/{image:path}", responses=_ERRORS)
async def delete_image(image: ImageRef, user: UserDep, images: ImagesDep) -> ImageDeleted:
    """Delete an image you built from the registry (admins: any). `image_shared` (409) while other users
    asked for it too; `kept_shared` when another tag in the registry is the same manifest."""
    report = await images.delete(user, image)
    outcome: Literal["deleted", "already_gone", "kept_shared"] = (
        "deleted" if report.deleted else "already_gone" if report.already_gone else "kept_shared"
    )
    return ImageDeleted(image=image, outcome=outcome)
