"""Standard Webhooks headers on callbacks, checked with the official library.

Tiers per test: the header computation is ``unit``; the executor against a real
receiver process is ``contract`` (as in test_executor.py); a real node's
delivery is ``integration``.

The HMAC key is the UTF-8 bytes of the project's signing secret; its Standard
Webhooks form is ``"whsec_" + base64(secret bytes)`` (``signing.standard_webhooks_secret``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from scheduler0 import signing
from scheduler0.daemon.executor.http import Executor, Fire
from scheduler0.daemon.security import new_signing_secret
from tests.support.nodes import Client, NodeProcess, create_credential, wait_until
from tests.support.receiver import run_receiver

SECRET = "whsec_" + "k" * 43  # shaped like a project's secret; its bytes are the key
BODY = b'[{"id":1,"execution_id":"1-1700000000"}]'
WEBHOOK_ID = "3f09c2a1d4e5b687-1"


def _webhook(secret: str = SECRET) -> Webhook:
    return Webhook(signing.standard_webhooks_secret(secret))


# -- the header computation ---------------------------------------------------


@pytest.mark.unit
def test_headers_verify_with_the_standardwebhooks_library() -> None:
    now = int(time.time())
    headers = signing.sign_standard(SECRET, WEBHOOK_ID, BODY, now)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == WEBHOOK_ID
    assert headers["webhook-timestamp"] == str(now)
    assert _webhook().verify(BODY, headers) == orjson.loads(BODY)
    # The same key given as bytes, as the README also shows.
    assert Webhook(SECRET.encode()).verify(BODY, headers) == orjson.loads(BODY)


@pytest.mark.unit
def test_signature_is_the_specified_hmac() -> None:
    headers = signing.sign_standard(SECRET, WEBHOOK_ID, BODY, 1_700_000_000)
    message = f"{WEBHOOK_ID}.1700000000.".encode() + BODY
    digest = hmac.new(SECRET.encode(), message, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()


@pytest.mark.unit
def test_secret_mapping_is_whsec_base64_of_the_secret_bytes() -> None:
    secret = new_signing_secret()
    standard = signing.standard_webhooks_secret(secret)
    assert standard.startswith("whsec_")
    key = base64.b64decode(standard.removeprefix("whsec_"), validate=True)
    assert key == secret.encode()
    assert len(key) >= 24  # the specification's minimum for a symmetric secret


@pytest.mark.unit
@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY.replace(b"1700000000", b"1700000001")},
        {"body": BODY + b" "},
        {"webhook-id": "3f09c2a1d4e5b687-2"},
        {"webhook-id": "0000000000000000-1"},
        {"webhook-timestamp": "shift"},
        {"secret": "whsec_" + "j" * 43},
    ],
    ids=["execution id", "trailing space", "chunk", "batch", "timestamp", "secret"],
)
def test_tampering_fails_verification(change: dict[str, str]) -> None:
    now = int(time.time())
    headers = signing.sign_standard(SECRET, WEBHOOK_ID, BODY, now)
    body = change.pop("body", BODY)
    webhook = _webhook(change.pop("secret", SECRET))
    if change.get("webhook-timestamp") == "shift":
        change["webhook-timestamp"] = str(now - 1)
    with pytest.raises(WebhookVerificationError):
        webhook.verify(body, headers | change)


@pytest.mark.unit
def test_stale_timestamp_fails() -> None:
    stale = int(time.time()) - 600
    headers = signing.sign_standard(SECRET, WEBHOOK_ID, BODY, stale)
    with pytest.raises(WebhookVerificationError):
        _webhook().verify(BODY, headers)


@pytest.mark.unit
def test_the_raw_signing_secret_is_not_a_standard_webhooks_secret() -> None:
    """The documented pitfall: a project's secret starts with whsec_, but its tail
    is URL-safe text, not the key in base64: the library derives another key
    (or, for some secrets, refuses the string as bad base64)."""
    for _ in range(20):
        secret = new_signing_secret()
        headers = signing.sign_standard(secret, WEBHOOK_ID, BODY, int(time.time()))
        with pytest.raises((WebhookVerificationError, ValueError)):
            Webhook(secret).verify(BODY, headers)
        Webhook(signing.standard_webhooks_secret(secret)).verify(BODY, headers)


@pytest.mark.unit
def test_the_readme_example_verifies() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Verifying a callback", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    secret = new_signing_secret()
    headers = signing.sign_standard(secret, WEBHOOK_ID, BODY, int(time.time()))
    assert namespace["verify"](secret, BODY, headers) == orjson.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        namespace["verify"](secret, BODY + b" ", headers)


@pytest.mark.unit
def test_a_webhook_id_with_a_dot_is_refused() -> None:
    with pytest.raises(ValueError):
        signing.sign_standard(SECRET, "a.b", BODY, 1)


@pytest.mark.unit
def test_legacy_headers_are_unchanged() -> None:
    legacy = signing.sign(SECRET, BODY, 1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert legacy == {
        "x-scheduler0-timestamp": "1700000000",
        "x-scheduler0-signature": f"v1={expected}",
    }


# -- the executor, against a real receiver process ------------------------------


def _fires(url: str, count: int, secret: str = SECRET) -> list[Fire]:
    return [
        Fire(f"{i}-1700000000", i, 1_700_000_000, url, secret, {"id": i, "n": "x" * 40})
        for i in range(count)
    ]


def _deliver(fires: list[Fire], **options: Any) -> None:
    async def main() -> None:
        settings: dict[str, Any] = {
            "max_workers": 2,
            "max_queue": 1000,
            "timeout": 5.0,
            "retry_max": 0,
            "retry_delay": 0.0,
            "payload_max_bytes": 1_000_000,
        }
        executor = Executor(**(settings | options))
        await executor.start()
        try:
            executor.submit(fires)
            done: list[Any] = []
            async with asyncio.timeout(15):
                while len(done) < len(fires):
                    done.extend(executor.drain_results())
                    await asyncio.sleep(0.01)
        finally:
            await executor.stop(drain_timeout=0)

    asyncio.run(main())


@pytest.mark.contract
def test_each_chunk_has_its_own_id_covered_by_the_signature(tmp_path: Path) -> None:
    with run_receiver(tmp_path, secret=SECRET, keep_requests=True) as receiver:
        _deliver(_fires(f"{receiver.url}/cb", 20) + _fires(f"{receiver.url}/cb", 1, "other"))
        requests = receiver.requests()
        records = receiver.records()

    signed_by_us = [(h, b) for _, h, b in requests if _verifies(SECRET, b, h)]
    assert len(signed_by_us) == 1 and len(requests) == 2
    assert {r["verified_standard"] for r in records} == {True, False}
    assert all(r["verified_standard"] == r["verified"] for r in records)
    for _, headers, _ in requests:
        batch = headers["x-scheduler0-batch-id"]
        number = headers["x-payload-chunk-id"].split("/")[0]
        assert headers["webhook-id"] == f"{batch}-{number}"
        assert headers["webhook-timestamp"] == headers["x-scheduler0-timestamp"]

    with run_receiver(tmp_path, secret=SECRET, keep_requests=True) as receiver:
        _deliver(_fires(f"{receiver.url}/cb", 20), payload_max_bytes=400)
        requests = receiver.requests()
    ids = [headers["webhook-id"] for _, headers, _ in requests]
    assert len(ids) > 1 and len(set(ids)) == len(ids)
    assert all(_verifies(SECRET, body, headers) for _, headers, body in requests)
    # Swapping the ids of two chunks of the same batch breaks both signatures.
    (_, first, first_body), (_, second, _) = requests[0], requests[1]
    assert not _verifies(SECRET, first_body, first | {"webhook-id": second["webhook-id"]})


@pytest.mark.contract
def test_retries_keep_the_webhook_id_and_are_signed_afresh(tmp_path: Path) -> None:
    with run_receiver(tmp_path, secret=SECRET, keep_requests=True, fail_first=2) as receiver:
        _deliver(_fires(f"{receiver.url}/cb", 3), retry_max=2)
        requests = receiver.requests()

    assert [record["status"] for record, _, _ in requests] == [500, 500, 200]
    assert len({headers["webhook-id"] for _, headers, _ in requests}) == 1
    assert all(_verifies(SECRET, body, headers) for _, headers, body in requests)


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        _webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


# -- a real node --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_a_real_delivery_verifies_and_tampering_fails(tmp_path: Path) -> None:
    with run_receiver(tmp_path, keep_requests=True) as receiver:
        node = NodeProcess(tmp_path / "node").start()
        try:
            client = Client(node.api, create_credential(node))
            project = client.data("POST", "/projects", 201, json={"name": "hooks"})
            job = {"spec": "@every 1s", "project_id": project["id"], "data": '{"n": 1}'}
            [created] = client.data(
                "POST", "/jobs", 201, json=[job | {"callback_url": f"{receiver.url}/cb"}]
            )
            wait_until(
                lambda: any(record["status"] == 200 for record, _, _ in receiver.requests()),
                timeout=30,
                interval=0.2,
                what="a delivered callback",
            )
            client.close()
        finally:
            node.kill()
        _, headers, body = receiver.requests()[0]

    secret = project["signing_secret"]
    webhook = Webhook(signing.standard_webhooks_secret(secret))
    [item] = webhook.verify(body, headers)
    assert item["id"] == created["id"] and item["data"] == '{"n": 1}'
    assert headers["webhook-id"] == (
        f"{headers['x-scheduler0-batch-id']}-{headers['x-payload-chunk-id'].split('/')[0]}"
    )
    # The existing scheme still verifies, with the same secret.
    assert signing.verify(secret, body, headers, int(time.time()))

    tampered_body = body.replace(item["execution_id"].encode(), b"999-1700000000")
    assert tampered_body != body
    other_chunk = headers | {"webhook-id": headers["webhook-id"][:-1] + "2"}
    other_batch = headers | {"webhook-id": "0" * 16 + "-1"}
    tampered = [(tampered_body, headers), (body, other_chunk), (body, other_batch)]
    for bad_body, bad_headers in tampered:
        with pytest.raises(WebhookVerificationError):
            webhook.verify(bad_body, bad_headers)
