"""Ingestion side of the clothing image index: tag, caption, embed, upsert into Chroma."""

__version__ = "0.1.0"
