"""The OpenAI-compatible endpoint's routes (tenant URLconf, under ``/v1/``).

A credential on a platform host names its tenant, so an OpenAI client configured with
``base_url=https://<platform>/v1`` and a tenant API key reaches these without a tenant host.
"""

from __future__ import annotations

from django.urls import path

from agents.openai_compat.catalog import model_detail, model_list
from agents.openai_compat.chat import chat_completions
from agents.openai_compat.responses import create_response

urlpatterns = [
    path("v1/models", model_list, name="openai-models"),
    # Model ids may hold slashes ("org/model"), as OpenAI-compatible servers allow.
    path("v1/models/<path:model>", model_detail, name="openai-model-detail"),
    path("v1/chat/completions", chat_completions, name="openai-chat-completions"),
    path("v1/responses", create_response, name="openai-responses"),
]
