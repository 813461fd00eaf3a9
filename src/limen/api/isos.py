"""REST route listing the boot images of the ISO directory."""

from __future__ import annotations

from fastapi import APIRouter

from limen.api.deps import SettingsDep
from limen.api.schemas import IsoOut
from limen.isos import list_isos

router = APIRouter(prefix="/api/isos", tags=["isos"])


@router.get("", response_model=list[IsoOut])
async def get_isos(settings: SettingsDep) -> list[IsoOut]:
    return [IsoOut(name=iso.name, size_bytes=iso.size_bytes) for iso in list_isos(settings.iso_dir)]
