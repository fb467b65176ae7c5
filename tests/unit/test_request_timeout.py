"""A Bot API request never outlives its message's lease: the timeout is derived from the lease or
refused when it is too long (issue 12, item 5)."""

from __future__ import annotations

import pytest
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import SendMessage
from aiohttp import ClientConnectorError, ConnectionTimeoutError, ServerDisconnectedError
from aiohttp.client_reqrep import ConnectionKey

from runner.errors import ConfigError
from runner.outbox.telegram import DeliveryConfig, outcome_unknown
from runner.settings import Settings


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


def _network_error(cause: BaseException) -> TelegramNetworkError:
    try:
        raise TelegramNetworkError(method=SendMessage(chat_id=1, text="x"), message="boom") from cause
    except TelegramNetworkError as exc:
        return exc


@pytest.mark.parametrize(("cause", "unknown"), [
    (TimeoutError(), True),  # no answer in time: it may have gone out
    (ServerDisconnectedError(), True),  # the connection broke after the request was written
    (ClientConnectorError(ConnectionKey("h", 1, False, True, None, None, None), OSError(111, "refused")), False),
    (ConnectionTimeoutError(), False),  # the connection was never made: nothing left
])
def test_only_a_request_that_may_have_left_is_an_unknown_outcome(cause: BaseException, unknown: bool) -> None:
    assert outcome_unknown(_network_error(cause)) is unknown
