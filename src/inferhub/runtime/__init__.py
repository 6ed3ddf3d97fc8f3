"""Embedded services: PostgreSQL and the supervised local model processes.

Public: ``embedded_postgres`` and one module per local model kind (chat, embedding, attached chat).
"""

__all__ = ["attached_chat_model", "embedded_postgres", "local_chat_model", "local_embedding_model"]
