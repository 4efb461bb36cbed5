"""A real S3 API server on 127.0.0.1 for the test session (moto in server mode), and a bucket per test.

The pipeline reaches it the way it reaches AWS: over HTTP, through its own S3 client code, with
the endpoint in ``AWS_ENDPOINT_URL`` (botocore reads it) and dummy credentials in the standard
environment variables. Nothing of ours is patched. The server starts once per session (about a
second); each test gets a bucket of its own, so tests never see each other's objects.

Fixtures (imported by tests/conftest.py):

* ``s3_server``: the running server (``.endpoint``, ``.client()`` - a boto3 client for setting up
  and inspecting buckets directly, bypassing our code).
* ``s3_bucket``: ``s3://NAME`` of a new empty bucket.
* ``s3_env``: the session's S3 environment for a test that changes it (``monkeypatch``-style:
  restored after the test), e.g. to point the client at a fault proxy.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from dataclasses import dataclass

import pytest

# What the test session's S3 client sees; a developer's ~/.aws never leaks in.
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "thresher-test-key-id",
    "AWS_SECRET_ACCESS_KEY": "thresher-test-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_bucket_numbers = itertools.count()


@dataclass
class S3Server:
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def new_bucket(self) -> str:
        name = f"thresher-test-{next(_bucket_numbers)}-{secrets.token_hex(3)}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    saved = {k: os.environ.get(k) for k in [*DUMMY_ENV, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]}
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(DUMMY_ENV, AWS_ENDPOINT_URL=f"http://{host}:{port}")
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    try:
        yield S3Server(host, port)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server) -> str:
    return f"s3://{s3_server.new_bucket()}"


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """``monkeypatch`` for the S3 environment (``s3_env.setenv("AWS_ENDPOINT_URL", proxy.endpoint)``)."""
    return monkeypatch
