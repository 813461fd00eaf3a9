"""Request-scoped access to the objects the app was built with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from limen.hypervisor import Hypervisor
from limen.settings import Settings


def _hypervisor(request: Request) -> Hypervisor:
    hypervisor: Hypervisor = request.app.state.hypervisor
    return hypervisor


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


HypervisorDep = Annotated[Hypervisor, Depends(_hypervisor)]
SettingsDep = Annotated[Settings, Depends(_settings)]
