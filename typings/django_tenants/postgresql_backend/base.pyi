from django.db.backends.postgresql.base import DatabaseWrapper as PostgresDatabaseWrapper
from django_tenants.models import TenantMixin

class FakeTenant:
    schema_name: str
    tenant_type: str | None
    def __init__(self, schema_name: str, tenant_type: str | None = None) -> None: ...
    def get_tenant_type(self) -> str | None: ...

class DatabaseWrapper(PostgresDatabaseWrapper):
    include_public_schema: bool
    # Set to the public schema by the constructor, so never None once a connection exists.
    tenant: TenantMixin | FakeTenant
    schema_name: str
    search_path_set_schemas: list[str] | None
    def set_tenant(self, tenant: TenantMixin | FakeTenant, include_public: bool = True) -> None: ...
    def set_schema(
        self, schema_name: str, include_public: bool = True, tenant_type: str | None = None
    ) -> None: ...
    def set_schema_to_public(self) -> None: ...
    def set_settings_schema(self, schema_name: str) -> None: ...
