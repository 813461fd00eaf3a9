"""REST route listing the boot images of the ISO directory (any signed-in user)."""

from __future__ import annotations

from fastapi import APIRouter

from limen.api.deps import SettingsDep
from limen.api.schemas import IsoOut
from limen.auth.deps import CurrentUser
from limen.isos import list_isos

router = APIRouter(prefix="/api/isos", tags=["isos"])


@router.get("", response_model=list[IsoOut])
async def get_isos(_user: CurrentUser, settings: SettingsDep) -> list[IsoOut]:
    return [IsoOut(name=iso.name, size_bytes=iso.size_bytes) for iso in list_isos(settings.iso_dir)]
