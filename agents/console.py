"""The operator console: a small page (no external assets) where a tenant operator picks an
agent, runs it, watches the answer stream over the WebSocket, and browses past executions;
and picks a workflow's resource to watch it move (state, history, agent runs) as it happens.

The page talks to the same public interfaces as any client (REST and WebSocket) with a
short-lived tenant JWT minted here for the signed-in operator, with the role their Django
permissions give (``tenants.operators.operator_role``): never more than an administrator gave.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from tenants.operators import operator_role
from tenants.roles import Permission, role_allows
from tenants.tokens import issue_token

CONSOLE_TOKEN_SECONDS = 900
NO_ROLE_MESSAGE = (
    "Your account may not use the agents console. An administrator of this tenant can give "
    'you the permission "Can run agents" (to run agents) or "Can view execution" (to watch '
    "them), and staff status."
)


@never_cache
def console(request: HttpRequest) -> HttpResponse:
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        return HttpResponse("The console is served on a tenant's domain.", status=404)
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url="/admin/login/")
    role = operator_role(user)
    if role is None:
        # Signed in, but without a role: sending them to the login page again would loop.
        return HttpResponse(NO_ROLE_MESSAGE, status=403, content_type="text/plain; charset=utf-8")
    token, claims = issue_token(
        tenant_slug=tenant.slug,
        role=role,
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
            "role": role,
            "can_run": role_allows(role, Permission.EXECUTIONS_RUN),
        },
    )
