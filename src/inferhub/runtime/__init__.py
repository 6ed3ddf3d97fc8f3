"""Embedded services: PostgreSQL and the supervised local model processes."""
