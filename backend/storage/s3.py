"""S3 and Cloudflare R2 storage through boto3 (R2 speaks the S3 API at its own endpoint).

Objects are written with PutObject (the same key again overwrites: idempotent) and handed out
as presigned GET URLs that expire after `presigned_url_ttl` seconds (SigV4 allows 7 days).
Settings read (company first, then global): `bucket`, `aws_region`, `aws_access_key_id`,
`aws_secret_access_key`, `s3_endpoint_url`, `presigned_url_ttl`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO

from backend.core.errors import UnusableInput
from backend.storage.base import ObjectNotFound, StorageError, check_key

DEFAULT_TTL = 7 * 24 * 3600
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3Storage:
    def __init__(
        self,
        *,
        bucket: str,
        name: str = "s3",
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        endpoint_url: str | None = None,
        default_ttl: int = DEFAULT_TTL,
    ):
        if not bucket:
            raise UnusableInput(f"{name} storage needs a bucket: mani companies set ID bucket=NAME.")
        self.name, self.bucket, self.endpoint_url = name, bucket, endpoint_url
        self.region = region or ("auto" if name == "r2" else "us-east-1")
        self.default_ttl = int(default_ttl or DEFAULT_TTL)
        self._credentials = (access_key_id, secret_access_key)
        self._client = None

    def __repr__(self) -> str:
        return f"<S3Storage {self.name} bucket={self.bucket} endpoint={self.endpoint_url or 'aws'}>"

    @property
    def client(self):
        if self._client is None:
            # Deferred, with botocore below: boto3 is loaded only by processes that use S3 or R2.
            import boto3
            from botocore.config import Config

            access_key_id, secret_access_key = self._credentials
            config = Config(
                region_name=self.region,
                signature_version="s3v4",
                retries={"total_max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                # R2 and most S3-compatible stores want path-style addressing at a custom endpoint.
                s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            )
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key, config=config,
            )
        return self._client

    def _fail(self, action: str, key: str, error: Exception) -> StorageError:
        return StorageError(f"{self.name}: cannot {action} {self.bucket}/{key}: {_describe(error)}")

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as error:
            raise self._fail("write", key, error) from error

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in _MISSING:
                return False
            raise self._fail("look up", key, error) from error
        except BotoCoreError as error:
            raise self._fail("look up", key, error) from error

    def _get_object(self, key: str) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in _MISSING:
                raise ObjectNotFound(f"no stored object {key} in {self.name} bucket {self.bucket}") from error
            raise self._fail("read", key, error) from error
        except BotoCoreError as error:
            raise self._fail("read", key, error) from error

    def get(self, key: str) -> bytes:
        body = self._get_object(key)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    def open_stream(self, key: str) -> BinaryIO:
        return self._get_object(key)["Body"]

    def url(self, key: str, *, ttl: int | None = None) -> str:
        check_key(key)
        expires = max(1, min(int(ttl or self.default_ttl), DEFAULT_TTL))
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
        )

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) not in _MISSING:
                raise self._fail("delete", key, error) from error
        except BotoCoreError as error:
            raise self._fail("delete", key, error) from error


def _describe(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        info = response.get("Error", {})
        return f"{info.get('Code')}: {info.get('Message') or ''}".strip(": ")
    return " ".join(str(error).split())[:300]


def _factory(name: str):
    def factory(*, settings: Any, company_settings: Mapping | None = None) -> S3Storage:
        cs = company_settings or {}
        endpoint = cs.get("s3_endpoint_url")
        if name == "r2" and not endpoint:
            raise UnusableInput("r2 storage needs s3_endpoint_url (https://<account id>.r2.cloudflarestorage.com).")
        return S3Storage(
            name=name,
            bucket=cs.get("bucket"),
            region=cs.get("aws_region"),
            access_key_id=cs.get("aws_access_key_id"),
            secret_access_key=cs.get("aws_secret_access_key"),
            endpoint_url=endpoint,
            default_ttl=cs.get("presigned_url_ttl") or getattr(settings, "presigned_url_ttl", None) or DEFAULT_TTL,
        )

    return factory


s3_storage = _factory("s3")
r2_storage = _factory("r2")
