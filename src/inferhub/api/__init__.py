"""The HTTP surface only: parse, validate, shape responses. No database access here."""
