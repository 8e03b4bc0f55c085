"""The router's API key: `API_KEY`, else the Secrets Manager secret the template passes, read once per
container. Against moto's Secrets Manager (a real HTTP endpoint)."""

from __future__ import annotations

import json

import pytest

from router_lambda import apikey
from tests.support.services import unique
from transcription.settings import Settings


@pytest.fixture
def secret(moto):
    sm = moto.client("secretsmanager")
    arn = sm.create_secret(Name=unique("router-key"), SecretString="key-one")["ARN"]
    apikey.forget()
    yield sm, arn
    apikey.forget()


def test_read_once_per_container(secret) -> None:
    sm, arn = secret
    s = Settings(api_key_secret_arn=arn)
    assert apikey.api_key(s) == "key-one"
    sm.put_secret_value(SecretId=arn, SecretString="key-two")
    assert apikey.api_key(s) == "key-one"  # cached: no Secrets Manager call per event
    apikey.forget()
    assert apikey.api_key(s) == "key-two"


def test_api_key_wins_and_json_secrets_work(secret) -> None:
    sm, arn = secret
    assert apikey.api_key(Settings(api_key="direct", api_key_secret_arn=arn)) == "direct"
    assert apikey.api_key(Settings()) is None
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"api_key": "from-json", "other": 1}))
    assert apikey.api_key(Settings(api_key_secret_arn=arn)) == "from-json"
    apikey.forget()
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "x"}))
    with pytest.raises(apikey.ApiKeyError, match="without one of the fields"):
        apikey.api_key(Settings(api_key_secret_arn=arn))


def test_a_missing_secret_is_a_clear_error_and_not_cached(secret) -> None:
    _sm, arn = secret
    missing = arn.rsplit(":", 1)[0] + ":nope-AbCdEf"
    s = Settings(api_key_secret_arn=missing)
    with pytest.raises(apikey.ApiKeyError, match="cannot read the API key secret"):
        apikey.api_key(s)
    with pytest.raises(apikey.ApiKeyError):  # tried again, not a cached failure
        apikey.api_key(s)
