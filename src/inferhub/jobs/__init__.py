"""Durable async jobs, built on the gateway pipeline (not beside it)."""
