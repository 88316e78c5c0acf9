"""``GET /plan``: the tenant's plan and where its quotas stand (read-only for tenants; the
platform's operators change plans in the platform admin or with ``manage.py set_plan``)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.common import schema_of
from agents.core.limits import consumption
from tenants.roles import Permission


class PlanApi(APIView):
    required_permission = Permission.IDENTITY_READ

    def get(self, request: Request) -> Response:
        # The connection's schema was set by the tenant middleware for this request.
        return Response(consumption(schema_of(request)))
