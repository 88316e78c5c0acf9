"""The operator console: a small page (no external assets) where a tenant operator picks an
agent, runs it, watches the answer stream over the WebSocket, and browses past executions.

The page talks to the same public interfaces as any client (REST and WebSocket) with a
short-lived tenant JWT minted here for the signed-in operator.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from tenants.roles import Role
from tenants.tokens import issue_token

CONSOLE_TOKEN_SECONDS = 900


@never_cache
def console(request: HttpRequest) -> HttpResponse:
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return HttpResponse("The console is served on a tenant's domain.", status=404)
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return redirect_to_login(request.get_full_path(), login_url="/admin/login/")
    token, claims = issue_token(
        tenant_slug=tenant.slug,
        role=Role.ADMIN if user.is_superuser else Role.USER,
        subject=f"user:{user.get_username()}",
        ttl_seconds=CONSOLE_TOKEN_SECONDS,
    )
    return render(
        request,
        "console/index.html",
        {
            "tenant": tenant,
            "token": token,
            "expires_at": claims["exp"],
            "username": user.get_username(),
        },
    )
