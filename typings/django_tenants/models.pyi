from collections.abc import Iterable
from typing import Any, Self

from django.db import models
from django.http import HttpRequest

class TenantMixin(models.Model):
    auto_drop_schema: bool
    auto_create_schema: bool
    clone_mode: str
    schema_name = models.CharField(max_length=63, unique=True, db_index=True)
    domain_url: str | None
    domain_subfolder: str | None

    class Meta:
        abstract = True

    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: object, exc_val: object, exc_tb: object) -> None: ...
    # Takes the schema creation's verbosity first, then Model.save's own arguments.
    def save(
        self,
        verbosity: int = 1,
        *args: Any,
        force_insert: bool | tuple[models.base.ModelBase, ...] = False,
        force_update: bool = False,
        using: str | None = None,
        update_fields: Iterable[str] | None = None,
    ) -> None: ...
    def activate(self) -> None: ...
    @classmethod
    def deactivate(cls) -> None: ...
    def create_schema(
        self, check_if_exists: bool = False, sync_schema: bool = True, verbosity: int = 1
    ) -> bool | None: ...
    def get_primary_domain(self) -> DomainMixin | None: ...
    def reverse(self, request: HttpRequest, view_name: str) -> str: ...

class DomainMixin(models.Model):
    domain = models.CharField(max_length=253, unique=True, db_index=True)
    # At run time a ForeignKey to settings.TENANT_MODEL; django-stubs takes the concrete target
    # from the app registry, so `Domain.tenant` is typed as the project's tenant model.
    tenant = models.ForeignKey(TenantMixin, on_delete=models.CASCADE, related_name="domains")
    is_primary = models.BooleanField(default=True, db_index=True)

    class Meta:
        abstract = True
