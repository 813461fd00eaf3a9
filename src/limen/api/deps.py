"""Request-scoped access to the objects the app was built with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from limen.hypervisor import Hypervisor
from limen.recovery import Recovery
from limen.settings import Settings


def _hypervisor(request: Request) -> Hypervisor:
    hypervisor: Hypervisor = request.app.state.hypervisor
    return hypervisor


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _recovery(request: Request) -> Recovery:
    recovery: Recovery = request.app.state.recovery
    return recovery


RecoveryDep = Annotated[Recovery, Depends(_recovery)]
HypervisorDep = Annotated[Hypervisor, Depends(_hypervisor)]
SettingsDep = Annotated[Settings, Depends(_settings)]
