"""The price table of a tenant (current schema) over REST: create, change, remove rows.

Every execution reads these rows (costs, budgets, and the pool virtual models choose from),
so a bad row is refused here rather than breaking runs: prices are non-negative decimals
with at most six decimal places, capabilities a list of lowercase tags. A model has at most
one row per credential and one row without a credential (the table's unique constraints);
a second one is a 409 naming the model.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from agents.engine.routing import is_virtual
from agents.models import ModelPrice, ProviderCredential
from agents.services.credentials import credential_get
from config.errors import Conflict, NotFound, ValidationFailed
from tenants.audit.services import audit_record

FIELDS = frozenset(
    {"credential", "model", "input_per_million", "output_per_million", "capabilities", "enabled"}
)
MAX_MODEL_CHARS = 200
# The columns: DecimalField(max_digits=12, decimal_places=6).
MAX_PRICE = Decimal("999999.999999")
PRICE_PLACES = 6
MAX_CAPABILITIES = 32
MAX_CAPABILITY_CHARS = 50
# Row ids are bigints: anything longer is no row (and must not reach the database as one).
_ROW_ID = re.compile(r"[0-9]{1,18}")


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {message}", details={field: [message]})


def _price(field: str, value: Any) -> Decimal:
    # Strings are the exact form (what answers give back); numbers are accepted for convenience.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(field, 'a decimal number, e.g. "0.15"')
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise _fail(field, 'a decimal number, e.g. "0.15"') from None
    if not price.is_finite():
        raise _fail(field, 'a decimal number, e.g. "0.15"')
    if price < 0:
        raise _fail(field, "must not be negative")
    if price > MAX_PRICE:
        raise _fail(field, f"at most {MAX_PRICE}")
    exponent = price.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > PRICE_PLACES:
        raise _fail(field, f"at most {PRICE_PLACES} decimal places")
    return price


def _capabilities(value: Any) -> list[str]:
    message = (
        f"a list of at most {MAX_CAPABILITIES} distinct lowercase tags "
        f'(1-{MAX_CAPABILITY_CHARS} characters), e.g. ["fast", "coding"]'
    )
    if not isinstance(value, list) or len(value) > MAX_CAPABILITIES:
        raise _fail("capabilities", message)
    for tag in value:
        # Routing matches tags exactly ("fast", "coding"...): "Fast" would silently match nothing.
        if (
            not isinstance(tag, str)
            or not 1 <= len(tag) <= MAX_CAPABILITY_CHARS
            or tag != tag.strip().lower()
        ):
            raise _fail("capabilities", message)
    if len(set(value)) != len(value):
        raise _fail("capabilities", message)
    return list(value)


def model_price_check(data: Any, *, partial: bool) -> dict[str, Any]:
    """A REST body made into column values (``credential`` resolved by name or id, prices as
    ``Decimal``); ``ValidationFailed`` names the first wrong field."""
    if not isinstance(data, dict):
        raise _fail("body", "must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise _fail(unknown[0], "unknown field")
    if not partial and "model" not in data:
        raise _fail("model", "required")
    clean: dict[str, Any] = {}
    if "model" in data:
        model = data["model"]
        if not isinstance(model, str) or not model.strip() or len(model) > MAX_MODEL_CHARS:
            raise _fail("model", f"a model name of at most {MAX_MODEL_CHARS} characters")
        if is_virtual(model.strip()):
            raise _fail("model", "names a virtual model (auto, cb:…); price the concrete models")
        clean["model"] = model.strip()
    if "credential" in data:
        ref = data["credential"]
        if ref is None:
            clean["credential"] = None
        elif not isinstance(ref, str) or not ref:
            raise _fail("credential", "the name or id of a provider credential, or null")
        else:
            try:
                clean["credential"] = credential_get(ref)
            except NotFound:
                raise _fail("credential", f"no provider credential {ref!r}") from None
    for field in ("input_per_million", "output_per_million"):
        if field in data:
            clean[field] = _price(field, data[field])
    if "capabilities" in data:
        clean["capabilities"] = _capabilities(data["capabilities"])
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise _fail("enabled", "must be true or false")
        clean["enabled"] = data["enabled"]
    return clean


def _conflict(model: str, credential: ProviderCredential | None) -> Conflict:
    where = f"with credential {credential.name!r}" if credential else "without a credential"
    return Conflict(
        f"model: a price for {model!r} {where} already exists",
        details={"model": ["already priced for this credential"]},
    )


def _check_unique(row: ModelPrice) -> None:
    """The table's constraints, checked first for a clear answer (the database still decides
    under concurrency: ``_save`` maps its refusal to the same 409)."""
    same = ModelPrice.objects.filter(model=row.model).exclude(pk=row.pk)
    same = (
        same.filter(credential__isnull=True)
        if row.credential_id is None
        else same.filter(credential_id=row.credential_id)
    )
    if same.exists():
        raise _conflict(row.model, row.credential)


def _save(row: ModelPrice, fields: list[str] | None = None) -> None:
    _check_unique(row)
    try:
        with transaction.atomic():
            row.save(update_fields=fields)
    except IntegrityError:
        raise _conflict(row.model, row.credential) from None


def _audit(row: ModelPrice, action: str, actor: str, schema_name: str, **details: Any) -> None:
    audit_record(
        schema_name=schema_name,
        actor=actor,
        action=action,
        target_type="model_price",
        target_id=str(row.pk),
        details={"model": row.model, **details},
    )


def model_price_create(*, data: Any, actor: str, schema_name: str) -> ModelPrice:
    """Add a row; 400 naming the field, 409 if the model is already priced there."""
    clean = model_price_check(data, partial=False)
    row = ModelPrice(**clean)
    _save(row)
    _audit(row, "model_price.create", actor, schema_name, fields=sorted(data))
    return row


def model_price_update(
    *, row: ModelPrice, changes: Any, actor: str, schema_name: str
) -> ModelPrice:
    """Change the given fields of a row (locked meanwhile); the others keep their values."""
    clean = model_price_check(changes, partial=True)
    if not clean:
        raise _fail("body", "nothing to change")
    with transaction.atomic():
        locked = (
            ModelPrice.objects.select_for_update(of=("self",))
            .select_related("credential")
            .get(pk=row.pk)
        )
        for field, value in clean.items():
            setattr(locked, field, value)
        _save(locked, sorted(clean))
    _audit(locked, "model_price.update", actor, schema_name, fields=sorted(changes))
    return locked


def model_price_delete(*, row: ModelPrice, actor: str, schema_name: str) -> None:
    row_id = row.pk
    row.delete()
    row.pk = row_id  # the audit entry names the row that was removed
    _audit(row, "model_price.delete", actor, schema_name)


def model_price_list() -> QuerySet[ModelPrice]:
    return ModelPrice.objects.select_related("credential").order_by("model", "credential__name")


def model_price_get(ref: str) -> ModelPrice:
    """A row of the current schema by id; NotFound otherwise."""
    if not _ROW_ID.fullmatch(ref):
        raise NotFound("Model price not found.")
    row = model_price_list().filter(pk=int(ref)).first()
    if row is None:
        raise NotFound("Model price not found.")
    return row


def _decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


def model_price_json(row: ModelPrice) -> dict[str, Any]:
    return {
        "id": row.pk,
        "model": row.model,
        "credential": row.credential.name if row.credential else None,
        "credential_id": str(row.credential_id) if row.credential_id else None,
        "input_per_million": _decimal(row.input_per_million),
        "output_per_million": _decimal(row.output_per_million),
        "capabilities": list(row.capabilities or []),
        "enabled": row.enabled,
    }
