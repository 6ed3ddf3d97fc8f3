"""Reading the dashboard's form fields: the messages a user sees for bad input, and the audit summaries."""

from __future__ import annotations

import pytest

from inferhub.ui.pages import FormError, audit_changes, limits_field, list_field, number_field


def test_number_field_parses_and_bounds() -> None:
    form = {"weight": " 7 ", "temperature": "0.25", "empty": ""}
    assert number_field(form, "weight", "Weight", minimum=1, maximum=1000) == 7
    assert number_field(form, "temperature", "Temperature", kind=float, maximum=2) == 0.25
    assert number_field(form, "empty", "Max tokens") is None
    assert number_field({}, "missing", "Max tokens") is None


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("0", int, "Weight: must be at least 1"),
        ("1001", int, "Weight: must be at most 1000"),
        ("2.5", int, "Weight: expected a whole number, got '2.5'"),
        ("lots", float, "Weight: expected a number, got 'lots'"),
        ("nan", float, "Weight: expected a number, got 'nan'"),
        ("inf", float, "Weight: expected a number, got 'inf'"),
        ("", int, "Weight: required"),
    ],
)
def test_number_field_messages(value: str, kind: type, message: str) -> None:
    with pytest.raises(FormError) as caught:
        number_field({"weight": value}, "weight", "Weight", kind=kind, minimum=1, maximum=1000, required=True)
    assert caught.value.message == message
    assert caught.value.param == "weight" and caught.value.status_code == 422


def test_limits_field_keeps_only_filled_limits() -> None:
    form = {"limit_rpm": "60", "limit_monthly_cost": "12.5", "limit_tpm": "", "limit_bogus": "5"}
    assert limits_field(form) == {"rpm": 60, "monthly_cost": 12.5}
    with pytest.raises(FormError, match="daily tokens: must be at least 0"):
        limits_field({"limit_daily_tokens": "-1"})


def test_list_field_splits_commas_and_lines() -> None:
    assert list_field(" smollm2, llama* \n qwen ,, ") == ["smollm2", "llama*", "qwen"]
    assert list_field(None) == []


def test_audit_changes_lists_changed_fields_only() -> None:
    update = {"action": "update", "before": {"id": 3, "weight": 1, "description": "", "priority": 0},
              "after": {"id": 3, "weight": 7, "description": "GPU box", "priority": 0}}  # fmt: skip
    assert audit_changes(update) == [("description", "", "GPU box"), ("weight", 1, 7)]
    create = {
        "action": "create",
        "before": None,
        "after": {"id": 4, "model_name": "m", "description": "", "limits": {}, "created_at": "2026-01-01"},
    }
    assert audit_changes(create) == [("model_name", None, "m")]  # empty values and timestamps are noise
    assert audit_changes({"action": "delete", "before": {"model": "m"}, "after": None}) == [("model", "m", None)]
