"""`gateway.senders.read_environment_once`: the environment's proxy and CA settings, read once."""

from __future__ import annotations

import pytest
import requests

from gateway.channels.twilio import TwilioSender
from gateway.channels.whatsapp_cloud import MetaSender
from gateway.senders import read_environment_once

PROXY = "http://proxy.example.invalid:3128"


@pytest.fixture
def environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/recpo-test-bundle.pem")
    return monkeypatch


def test_proxy_and_ca_bundle_are_kept_and_no_longer_looked_up(environment):
    session = requests.Session()
    read_environment_once(session, "https://api.twilio.com")
    assert session.proxies == {"https": PROXY}
    assert session.verify == "/etc/ssl/certs/recpo-test-bundle.pem"
    assert session.trust_env is False
    environment.setenv("HTTPS_PROXY", "http://elsewhere.invalid:1")
    settings = session.merge_environment_settings("https://api.twilio.com/x", {}, None, None, None)
    assert settings["proxies"] == {"https": PROXY}


def test_no_proxy_for_the_host_is_honoured(environment):
    environment.setenv("NO_PROXY", "graph.facebook.com")
    session = requests.Session()
    read_environment_once(session, "https://graph.facebook.com/v21.0/123/messages")
    assert session.proxies == {}


def test_without_variables_requests_defaults_stay(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    session = requests.Session()
    read_environment_once(session, "https://api.twilio.com")
    assert session.proxies == {}
    assert session.verify is True


def test_both_senders_read_it_for_their_host(environment):
    twilio = TwilioSender("AC" + "0" * 32, "token", status_callback="https://x.invalid/s")
    assert twilio._http.session.proxies == {"https": PROXY}
    assert twilio._http.session.trust_env is False
    meta = MetaSender("EAAG-token", "123")
    assert meta._session.proxies == {"https": PROXY}
    assert meta._session.trust_env is False
