"""Count a request's prompt tokens exactly as llama-cpp-python's server does, without asking it.

llama-cpp-python streams without usage, and its ``/extras/tokenize/count`` counts plain text: the
gateway then billed a stream's messages without the chat template (18 tokens where the same request
without streaming reports 31). This counter loads the GGUF's vocabulary only (no weights, no
context), renders the messages with the model's own chat handler (the GGUF's
``tokenizer.chat_template``, tools included, exactly as ``Llama.create_chat_completion`` picks it)
and tokenizes the result as that handler does. Loaded on first use; one count takes well
under a millisecond for ordinary prompts, and callers on the event loop run it in a thread.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

# The request fields the server's chat handler renders the prompt from.
_CHAT_FIELDS = ("functions", "function_call", "tools", "tool_choice")


_GGML_LOG_ERROR = 3
_log_callback: Any = None  # held here: llama.cpp keeps only a pointer to it


def _route_llama_log(llama_cpp: Any) -> None:
    """llama.cpp logs from C through a callback that llama-cpp-python prints to stderr as plain text (a
    vocabulary-only load warns about its context, harmlessly). In this process its errors go to the JSON log
    instead and the rest is dropped, so the server's output stays JSON lines."""
    global _log_callback
    if _log_callback is not None:
        return
    import structlog

    log = structlog.get_logger("inferhub.llama_cpp")

    @llama_cpp.llama_log_callback
    def forward(level: int, text: bytes, user_data: Any) -> None:
        if level == _GGML_LOG_ERROR:
            log.warning("llama_cpp_error", message=text.decode("utf-8", "replace").strip())

    _log_callback = forward
    llama_cpp.llama_log_set(forward, None)


class _PromptCaptured(Exception):
    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens


class _Recorder:
    """Stands in for the ``Llama`` a chat handler generates with: the handler's first tokenize is its
    prompt, so the count stops there (before grammars are built or anything is generated)."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def tokenize(self, *args: Any, **kwargs: Any) -> list[int]:
        raise _PromptCaptured(self._llama.tokenize(*args, **kwargs))

    def create_completion(self, *, prompt: list[int], **_: Any) -> Any:
        raise _PromptCaptured(list(prompt))


class ChatPromptCounter:
    """Prompt tokens of chat and completion requests for one GGUF model, as the engine counts them."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)
        self._lock = threading.Lock()  # llama.cpp's tokenizer and the Jinja render are not shared safely
        self._llama: Any = None

    def count(self, body: dict[str, Any]) -> int:
        """The prompt tokens of an OpenAI-shaped chat (``messages``) or completion (``prompt``) body."""
        with self._lock:
            llama = self._llama or self._load()
            if "messages" in body:
                return self._count_chat(llama, body)
            return self._count_completion(llama, body.get("prompt", ""))

    def load(self) -> None:
        """Load the vocabulary now (about 0.3 s), rather than in the first count."""
        with self._lock:
            if self._llama is None:
                self._load()

    def _load(self) -> Any:
        """The model's vocabulary and chat template, loaded once (a few MB; no weights, no context)."""
        import llama_cpp

        _route_llama_log(llama_cpp)
        self._llama = llama_cpp.Llama(model_path=str(self.model_path), vocab_only=True, verbose=False)
        return self._llama

    def _count_chat(self, llama: Any, body: dict[str, Any]) -> int:
        from llama_cpp import llama_chat_format

        handler = (
            llama.chat_handler
            or llama._chat_handlers.get(llama.chat_format)
            or llama_chat_format.get_chat_completion_handler(llama.chat_format)
        )
        fields = {name: body[name] for name in _CHAT_FIELDS if body.get(name) is not None}
        try:
            handler(llama=_Recorder(llama), messages=body["messages"], **fields)
        except _PromptCaptured as captured:
            return len(captured.tokens)
        raise RuntimeError(f"the chat handler of {self.model_path.name} did not build a prompt")

    @staticmethod
    def _count_completion(llama: Any, prompt: Any) -> int:
        text = "".join(p for p in prompt if isinstance(p, str)) if isinstance(prompt, list) else str(prompt)
        if not text:
            return 0
        # ``create_completion`` of a text prompt: BOS (if the model adds one) + the text, specials parsed.
        return len(llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))
