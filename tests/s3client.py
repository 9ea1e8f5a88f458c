"""A plain aiobotocore client on the test session's gateway, for tests that look at the bucket
from outside the adapter (what keys exist, objects an older Mailyard would have written)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config as BotoConfig

from tests.s3 import Gateway


@asynccontextmanager
async def raw_client(gateway: Gateway) -> AsyncIterator[Any]:
    config = BotoConfig(region_name="us-east-1", s3={"addressing_style": "path"},
                        # radosgw before 2025 refuses botocore's default CRC checksums.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
    async with get_session().create_client(
            "s3", endpoint_url=gateway.endpoint, config=config,
            aws_access_key_id=gateway.access_key,
            aws_secret_access_key=gateway.secret_key) as client:
        yield client


async def keys(gateway: Gateway, prefix: str) -> list[str]:
    """Every key of the session's bucket under `prefix`, in listing order."""
    async with raw_client(gateway) as client:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=gateway.bucket,
                                                                 Prefix=prefix)
        return [str(o["Key"]) async for page in pages for o in page.get("Contents", [])]
