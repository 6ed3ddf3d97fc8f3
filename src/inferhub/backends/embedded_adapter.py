"""The in-process embedding model, behind the same adapter interface as a remote engine."""

from __future__ import annotations

from typing import Any

from inferhub.backends import translate
from inferhub.backends.base import Adapter, Backend
from inferhub.runtime.local_embedding_model import LocalEmbeddingModel


class EmbeddedAdapter(Adapter):
    protocol_capabilities = frozenset({"embeddings"})

    def __init__(self, backend: Backend, model: LocalEmbeddingModel) -> None:
        super().__init__(backend, client=None)  # type: ignore[arg-type]
        self.model = model

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = translate.embedding_inputs(body["input"])
        vectors, tokens = await self.model.embed(inputs)
        return translate.openai_embeddings_response(vectors, self.backend.model_name, tokens)

    async def check_health(self) -> bool:
        return self.model.healthy

    async def list_models(self) -> list[str]:
        return [self.backend.model_name]
