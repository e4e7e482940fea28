"""Schemathesis hooks: real credentials for the two security schemes of openapi.yaml.

Each provider mints its credential through the API itself (register -> login -> create key).
Schemathesis refetches after a 401, so an account deleted, signed out or with its password
changed, or a key revoked, by a generated request is simply replaced by a fresh one.
"""

import os
import uuid

import requests
import schemathesis

BASE = os.environ["GATEWAY_URL"]
PASSWORD = "correct horse battery"


def _new_user():
    """A fresh account with an access token and one API key (so key listings are not empty)."""
    email = f"st-{uuid.uuid4().hex}@example.com"
    r = requests.post(f"{BASE}/api/v1/auth/register", json={"email": email, "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    r = requests.post(f"{BASE}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    token = r.json()["access_token"]
    r = requests.post(
        f"{BASE}/api/v1/auth/keys",
        json={"name": "schemathesis"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    r.raise_for_status()
    key = r.json()["key"]
    # Automation on, so chat requests can open a session on the simulated marketplace.
    r = requests.put(
        f"{BASE}/api/v1/automation/settings",
        json={"is_enabled": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    r.raise_for_status()
    return token, key


def _set_authorization(case, value):
    case.headers = case.headers or {}
    case.headers["Authorization"] = value


@schemathesis.auth().apply_to(path_regex=r"^/api/v1/auth/(keys|me|private-key|delegation|register|logout|password)")
class BearerAuth:
    def get(self, case, context):
        token, _key = _new_user()
        return token

    def set(self, case, data, context):
        _set_authorization(case, f"Bearer {data}")


@schemathesis.auth().apply_to(path_regex=r"^/api/v1/(automation|session|chat|chat-history|billing)/|^/api/v1/embeddings$|^/api/v1/audio/")
class APIKeyAuth:
    def get(self, case, context):
        _token, key = _new_user()
        return key

    def set(self, case, data, context):
        _set_authorization(case, f"Bearer {data}")
        if case.path in ("/api/v1/session/approve", "/api/v1/billing/credits/adjust"):
            # The operator's credential, as the gateway under test was started with it.
            case.headers["X-Admin-Token"] = os.environ["ADMIN_TOKEN"]
