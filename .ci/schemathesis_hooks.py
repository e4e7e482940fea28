"""Schemathesis hooks: real credentials for the two security schemes of openapi.yaml.

Each provider mints its credential through the API itself (register -> login -> create key).
Schemathesis refetches after a 401, so an account deleted or a key revoked by a generated
request is simply replaced by a fresh one.
"""

import os
import uuid

import requests
import schemathesis

BASE = os.environ["GATEWAY_URL"]
PASSWORD = "correct horse battery"


def _new_user():
    email = f"st-{uuid.uuid4().hex}@example.com"
    r = requests.post(f"{BASE}/api/v1/auth/register", json={"email": email, "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    r = requests.post(f"{BASE}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def _set_authorization(case, value):
    case.headers = case.headers or {}
    case.headers["Authorization"] = value


@schemathesis.auth().apply_to(path_regex=r"^/api/v1/auth/(keys|me|private-key|delegation|register)")
class BearerAuth:
    def get(self, case, context):
        return _new_user()

    def set(self, case, data, context):
        _set_authorization(case, f"Bearer {data}")


@schemathesis.auth().apply_to(path_regex=r"^/api/v1/automation/")
class APIKeyAuth:
    def get(self, case, context):
        token = _new_user()
        r = requests.post(
            f"{BASE}/api/v1/auth/keys",
            json={"name": "schemathesis"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        r.raise_for_status()
        return r.json()["key"]

    def set(self, case, data, context):
        _set_authorization(case, f"Bearer {data}")
