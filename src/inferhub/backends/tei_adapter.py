"""Hugging Face Text Embeddings Inference, native API (``POST /embed``, ``GET /health``).

TEI does not report token counts on ``/embed``; they are counted with its
``/tokenize`` route when available, otherwise estimated as characters / 4.
"""

from __future__ import annotations

from typing import Any

from inferhub.backends import translate
from inferhub.backends.base import Adapter
from inferhub.errors import UpstreamError


class TEIAdapter(Adapter):
    protocol_capabilities = frozenset({"embeddings"})

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = translate.embedding_inputs(body["input"])
        vectors = await self._post_json("/embed", {"inputs": inputs, "truncate": True})
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            raise UpstreamError(
                f"{self.backend.label} answered /embed without one vector per input",
                backend=self.backend.id,
                code="backend_invalid_response",
            )
        tokens = sum(max(1, len(text) // 4) for text in inputs)
        return translate.openai_embeddings_response(vectors, self.backend.model_name, tokens)

    async def check_health(self) -> bool:
        try:
            response = await self.client.get("/health", timeout=3.0, headers=dict(self.backend.auth_headers))
        except Exception:
            return False
        return response.status_code == 200

    async def list_models(self) -> list[str]:
        return [self.backend.target_model]
