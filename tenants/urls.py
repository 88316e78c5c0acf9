from __future__ import annotations

from django.urls import path

from tenants import api

urlpatterns = [
    path("auth/token", api.TokenIssueApi.as_view(), name="auth-token"),
    path("auth/whoami", api.WhoAmIApi.as_view(), name="auth-whoami"),
    path("api-keys", api.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api-keys/<str:key_id>", api.ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("audit-log", api.AuditLogListApi.as_view(), name="audit-log"),
]
