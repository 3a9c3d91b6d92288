"""The daemon's own service registration in Consul, against the in-test server."""

from __future__ import annotations

import dataclasses

import pytest
from consulfake import FakeConsul
from helpers import async_wait_for

from reconciler.consul.client import ConsulClient
from reconciler.consul.connection import client_config
from reconciler.consul.registration import SelfRegistration, registration_body
from reconciler.daemon.consul import ConsulTrigger
from reconciler.settings.model import (
    ConsulSettings,
    DefaultCheckSettings,
    ServiceRegistrationSettings,
    Settings,
    TLSSettings,
)

pytestmark = pytest.mark.anyio


def settings(**registration: object) -> Settings:
    reg = ServiceRegistrationSettings(**registration)  # type: ignore[arg-type]
    return Settings(id="cts-01", port=8558, consul=ConsulSettings(service_registration=reg))


def test_the_body_is_ctss() -> None:
    body = registration_body(settings(namespace="team", address="10.0.0.5"))
    assert body == {
        "ID": "cts-01",
        "Name": "consul-terraform-sync",
        "Tags": ["cts"],
        "Port": 8558,
        "Address": "10.0.0.5",
        "Namespace": "team",
        "Check": {
            "Name": "CTS Health Status",
            "CheckID": "cts-01-health",
            "HTTP": "http://localhost:8558/v1/health",
            "Method": "GET",
            "Interval": "10s",
            "Timeout": "2s",
            "DeregisterCriticalServiceAfter": "30m",
            "TLSSkipVerify": False,
        },
    }
    https = dataclasses.replace(settings(), tls=TLSSettings(enabled=True))
    assert registration_body(https)["Check"]["HTTP"] == "https://localhost:8558/v1/health"
    given = settings(default_check=DefaultCheckSettings(address="https://cts.example.com:8558/"))
    assert registration_body(given)["Check"]["HTTP"] == "https://cts.example.com:8558/v1/health"
    assert "Check" not in registration_body(
        settings(default_check=DefaultCheckSettings(enabled=False))
    )


async def test_registered_after_consul_comes_back_and_deregistered_on_close() -> None:
    async with FakeConsul() as consul:
        client = ConsulClient(client_config(ConsulSettings(address=consul.address)))
        consul.fail(500, "agent down", path="/v1/agent/service/register", times=1)
        reg = SelfRegistration(client, settings())
        reg.start()
        await async_wait_for(lambda: "cts-01" in consul.agent_services, timeout=10)
        assert len(consul.requests_to("/v1/agent/service/register")) == 2  # retried
        await reg.close()
        assert consul.agent_services == {} and not reg.registered
        await client.aclose()


async def test_close_before_registering_sends_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeConsul() as consul:
        client = ConsulClient(client_config(ConsulSettings(address=consul.address)))
        consul.fail(500, "agent down", path="/v1/agent/service/register", times=100)
        reg = SelfRegistration(client, settings())
        reg.start()
        # Until Consul's refusal has come back: a registration still in flight may have
        # arrived, and is rightly taken back.
        await async_wait_for(
            lambda: "registering service cts-01 failed" in caplog.text, what="the refusal"
        )
        await reg.close()
        await client.aclose()
        assert consul.requests_to("/v1/agent/service/deregister/cts-01") == []


async def test_registration_disabled_registers_nothing() -> None:
    async with FakeConsul() as consul:
        off = dataclasses.replace(
            settings(enabled=False),
            consul=ConsulSettings(
                address=consul.address,
                service_registration=ServiceRegistrationSettings(enabled=False),
            ),
        )
        trigger = ConsulTrigger.from_settings(off.consul, register=off)
        assert trigger.registration is None
        trigger.serving()
        await trigger.aclose()
        assert consul.requests_to("/v1/agent/service/register") == []
        on = dataclasses.replace(settings(), consul=ConsulSettings(address=consul.address))
        trigger = ConsulTrigger.from_settings(on.consul, register=on)
        trigger.serving()
        await async_wait_for(lambda: "cts-01" in consul.agent_services)
        await trigger.aclose()
        assert consul.agent_services == {}
