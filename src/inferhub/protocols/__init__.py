"""Translations between client protocols and the OpenAI chat shape the pipeline speaks."""
