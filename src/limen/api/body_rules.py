"""limen's own rules of a request body, run on the fields pydantic let through when another field failed it.

pydantic checks a body's types (and the bounds its model declares); limen's rules (a VM name, the host's CPUs
and memory, a password's length) run once the route has the body. A body with a type error in one field never
reaches its route, so a rule broken in another field was told only on the next submit: the user fixed one
thing and met the next. A route registers its model's rules here (:func:`body_rules`); the VALIDATION_ERROR
handler (``error_responses.py``) runs them on what passed (:func:`rule_refusals`) and answers every refusal at
once. A rule that needs a field that failed cannot run: the rules get that field as None and skip it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel

from limen.errors import LimenError, Refusals, ValidationFailed

log = logging.getLogger("limen.api")

Model = TypeVar("Model", bound=BaseModel)
# The rules of one body model: raise ValidationFailed (one, or all_of several) for what they refuse. The fields
# named in the frozenset failed pydantic's checks and are None in the model.
BodyRules = Callable[[Request, Model, frozenset[str]], Awaitable[None]]

_RULES: dict[type[BaseModel], BodyRules[Any]] = {}


def body_rules(model: type[Model]) -> Callable[[BodyRules[Model]], BodyRules[Model]]:
    """Registers the decorated function as ``model``'s rules (the same ones its route runs)."""

    def register(rules: BodyRules[Model]) -> BodyRules[Model]:
        _RULES[model] = rules
        return rules

    return register


def body_model(request: Request) -> type[BaseModel] | None:
    """The model of the request's route's body, if it has one."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(body_field, "field_info", None), "annotation", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


async def rule_refusals(request: Request, errors: Sequence[Mapping[str, Any]], body: Any) -> list[ValidationFailed]:
    """The refusals of limen's rules among the body's fields that passed pydantic (``errors``: its refusals)."""
    model = body_model(request)
    rules = _RULES.get(model) if model is not None else None
    if model is None or rules is None or not isinstance(body, dict):
        return []
    failed: set[str] = set()
    for error in errors:
        location = tuple(error.get("loc", ()))
        if len(location) < 2 or location[0] != "body":
            return []  # the body as a whole was refused (not an object, a rule of the model's): no field is known good
        failed.add(str(location[1]))
    passed = {name: body[name] for name in model.model_fields if name in body and name not in failed}
    values = model.model_construct(**passed, **dict.fromkeys(failed & set(model.model_fields)))
    refusals = Refusals()
    try:
        with refusals.check():
            await rules(request, values, frozenset(failed))
    except LimenError as exc:  # e.g. the host's limits unknown (libvirt down): pydantic's refusals alone, then
        log.info("a body's rules could not run beside its type errors: %s", exc,
                 extra={"event": "body_rules_skipped", "code": exc.code.name})
        return []
    return refusals.found
