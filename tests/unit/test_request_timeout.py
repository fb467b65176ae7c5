"""A Bot API request never outlives its message's lease: the timeout is derived from the lease or
refused when it is too long (issue 12, item 5)."""

from __future__ import annotations

import pytest

from runner.errors import ConfigError
from runner.settings import Settings
from runner.telegram import DeliveryConfig


def test_the_request_timeout_is_a_third_of_the_lease_by_default() -> None:
    assert Settings.from_env({"RUNNER_ID": "x"}).request_timeout == 20
    assert Settings.from_env({"RUNNER_ID": "x", "RUNNER_LEASE_SECONDS": "6"}).request_timeout == 2


def test_a_request_timeout_shorter_than_half_the_lease_is_taken() -> None:
    s = Settings.from_env({"RUNNER_ID": "x", "TELEGRAM_REQUEST_TIMEOUT": "25"})
    assert s.request_timeout == 25


@pytest.mark.parametrize(("timeout", "lease"), [("30", "60"), ("45", "60"), ("90", "60"), ("3", "6")])
def test_a_request_timeout_that_could_outlive_the_lease_is_refused(timeout: str, lease: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"RUNNER_ID": "x", "TELEGRAM_REQUEST_TIMEOUT": timeout, "RUNNER_LEASE_SECONDS": lease})
    assert str(err.value) == (f"TELEGRAM_REQUEST_TIMEOUT={timeout} must be shorter than half of RUNNER_LEASE_SECONDS "
                              f"({lease}): a send must end before its message's lease can run out; lower it or "
                              "raise RUNNER_LEASE_SECONDS")


def test_a_delivery_config_whose_requests_could_outlive_the_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than half the outbox lease"):
        DeliveryConfig(lease_seconds=6, request_timeout=3)
    assert DeliveryConfig(lease_seconds=6, request_timeout=2.9).request_timeout == 2.9
