"""The executor wire models: the official clients' field names in camelCase
or snake_case, each bad field named in the 422."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler0.errors import ValidationFailed
from scheduler0.models import DeleteIn, ExecutorIn, ExecutorPatch, JobIn, JobPatch, parse_one

pytestmark = pytest.mark.unit

CAMEL = {
    "name": "billing",
    "type": "webhook_url",
    "webhookUrl": "http://127.0.0.1:3000/hooks",
    "webhookMethod": "put",
    "webhookSecret": "s3cret",
    "createdBy": "alice",
}
SNAKE = {
    "name": "billing",
    "type": "webhook_url",
    "webhook_url": "http://127.0.0.1:3000/hooks",
    "webhook_method": "put",
    "webhook_secret": "s3cret",
    "created_by": "alice",
}


def fields_of(model: Any, body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_one(model, body)
    return [detail.field for detail in caught.value.details]


def test_camel_and_snake_case_give_the_same_executor_with_the_method_upper_case() -> None:
    camel, snake = parse_one(ExecutorIn, CAMEL), parse_one(ExecutorIn, SNAKE)
    assert camel == snake
    assert (camel.webhook_method, camel.webhook_secret, camel.created_by) == (
        "PUT",
        "s3cret",
        "alice",
    )
    plain = parse_one(ExecutorIn, {k: v for k, v in CAMEL.items() if k != "webhookMethod"})
    assert plain.webhook_method == "POST"


def test_a_field_given_in_both_spellings_is_named_once() -> None:
    assert fields_of(ExecutorIn, {**CAMEL, "webhook_url": "http://x.test/"}) == ["webhook_url"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "cloud_function"}, "type"),
        ({"type": 3}, "type"),
        ({"webhookMethod": "CONNECT"}, "webhook_method"),
        ({"webhookMethod": 1}, "webhook_method"),
        ({"webhookUrl": "http://x.test:0/"}, "webhook_url"),
        ({"webhookSecret": "tab\there"}, "webhook_secret"),
        ({"name": "a\u202eb"}, "name"),
        ({"cloudApiKey": "k"}, "cloudApiKey"),
    ],
)
def test_a_bad_executor_field_is_named(change: dict[str, Any], field: str) -> None:
    assert fields_of(ExecutorIn, {**CAMEL, **change}) == [field]


def test_a_change_sets_only_what_it_gives_and_null_drops_only_the_secret() -> None:
    patch = parse_one(ExecutorPatch, {"webhookSecret": None, "modifiedBy": "bob"})
    assert patch.model_fields_set == {"webhook_secret", "modified_by"}
    assert fields_of(ExecutorPatch, {"webhookUrl": None}) == ["webhook_url"]
    assert fields_of(ExecutorPatch, {}) == ["body"]
    assert parse_one(DeleteIn, {"deletedBy": "carol"}).deleted_by == "carol"


def test_a_job_names_exactly_one_destination() -> None:
    base = {"project_id": 1, "spec": "* * * * *"}
    assert parse_one(JobIn, {**base, "executorId": 2}).destination_problems() == []
    assert parse_one(JobIn, {**base, "callbackUrl": "http://x.test/"}).destination_problems() == []
    neither = parse_one(JobIn, base).destination_problems(3)
    assert [(d.field, d.index) for d in neither] == [("callback_url", 3)]
    both = parse_one(JobIn, {**base, "executorId": 2, "callbackUrl": "http://x.test/"})
    assert [d.field for d in both.destination_problems()] == ["executor_id"]
    assert fields_of(JobIn, {**base, "executorId": 0}) == ["executor_id"]
    assert fields_of(JobPatch, {"executorId": None}) == ["executor_id"]
