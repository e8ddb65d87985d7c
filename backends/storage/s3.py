"""Amazon S3 (and S3-compatible servers) for the object-store job store, through s3fs.

The endpoint and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL_S3``
or ``AWS_ENDPOINT_URL``, the credential chain), so the same code talks to AWS and to a local
server. With a custom endpoint, path-style addressing is used: local servers rarely resolve
bucket host names.
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Mapping
from typing import Any

from toilray.backends.storage.faults import StorageConfigurationError
from toilray.backends.storage.services import CREATE_ONLY, ObjectService, ObjectStat

_PART = 16 << 20  # multipart part size: memory per upload is about _PART * _PARALLEL_PARTS
_PARALLEL_PARTS = 4
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict"}


def check_bucket_name(bucket: str, locator: str) -> None:
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise StorageConfigurationError(
            f"'{bucket}' in '{locator}' is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )


def endpoint_from_environment() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _client_error(exc: BaseException) -> tuple[str, int] | None:
    """(error code, HTTP status) of the botocore ClientError behind an s3fs exception."""
    current: BaseException | None = exc
    while current is not None:
        response = getattr(current, "response", None)
        if isinstance(response, dict) and "Error" in response:
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            return str(response["Error"].get("Code", "")), status
        current = current.__cause__ or current.__context__
    return None


class S3Service(ObjectService):
    scheme = "s3"

    def __init__(self, region: str | None = None) -> None:
        import s3fs

        self.region = region
        endpoint = endpoint_from_environment()
        config: dict[str, Any] = {
            "retries": {"max_attempts": 3, "mode": "standard"},
            "connect_timeout": 20,
            "read_timeout": 120,
        }
        if endpoint:
            config["s3"] = {"addressing_style": "path"}
        client_kwargs = {"region_name": region} if region else {}
        self.fs = s3fs.S3FileSystem(
            endpoint_url=endpoint,
            client_kwargs=client_kwargs,
            config_kwargs=config,
            use_listings_cache=False,
            skip_instance_cache=True,
            max_concurrency=_PARALLEL_PARTS,
        )

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.fs.call_s3("head_bucket", Bucket=bucket)
        except FileNotFoundError:
            return False
        return True

    def create_bucket(self, bucket: str) -> bool:
        params: dict[str, Any] = {"Bucket": bucket}
        # us-east-1 is the one region that must not be named as a location constraint.
        if self.region and self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.fs.call_s3("create_bucket", **params)
        except Exception as exc:
            code = (_client_error(exc) or ("", 0))[0]
            if code == "BucketAlreadyOwnedByYou":
                return False
            if code == "BucketAlreadyExists":
                raise StorageConfigurationError(
                    f"The S3 bucket name '{bucket}' is taken by another account; choose another name"
                ) from None
            raise
        return True

    def delete_bucket(self, bucket: str) -> bool:
        try:
            self.fs.call_s3("delete_bucket", Bucket=bucket)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if (_client_error(exc) or ("", 0))[0] == "BucketNotEmpty":
                return False
            raise
        return True

    def stat(self, path: str) -> ObjectStat:
        bucket, key, _ = self.fs.split_path(path)
        head = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        etag = str(head.get("ETag", "")).strip('"')
        md5: bytes | None = None
        # Only a single-part upload without KMS encryption has the content's MD5 as its ETag.
        if "-" not in etag and head.get("ServerSideEncryption") != "aws:kms":
            try:
                md5 = binascii.unhexlify(etag)
            except (binascii.Error, ValueError):
                md5 = None
        return ObjectStat(int(head["ContentLength"]), etag, dict(head.get("Metadata") or {}), md5)

    def read_versioned(self, path: str) -> tuple[bytes, str]:
        from fsspec.asyn import sync

        bucket, key, _ = self.fs.split_path(path)

        async def get() -> tuple[bytes, str]:
            answer = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            async with answer["Body"] as body:
                data = await body.read()
            return data, str(answer.get("ETag", "")).strip('"')

        return sync(self.fs.loop, get)

    def put_bytes(self, path: str, data: bytes, metadata: Mapping[str, str], precondition: str | None) -> str | None:
        bucket, key, _ = self.fs.split_path(path)
        condition: dict[str, str] = {}
        if precondition == CREATE_ONLY:
            condition["IfNoneMatch"] = "*"
        elif precondition is not None:
            condition["IfMatch"] = f'"{precondition}"'
        try:
            answer = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, Metadata=dict(metadata),
                                     **condition)
        except FileExistsError:
            return None
        except OSError as exc:
            error = _client_error(exc)
            if condition and error is not None and (error[0] in _PRECONDITION_CODES or error[1] == 412):
                return None
            raise
        return str(answer.get("ETag", "")).strip('"')

    def upload_file(self, local_path: str, path: str, metadata: Mapping[str, str], verify: bool) -> None:
        # botocore sends a CRC32 checksum with every part by default and S3 checks it on
        # arrival, so uploads are verified by the protocol whatever ``verify`` says.
        self.fs.put_file(local_path, path, Metadata=dict(metadata), chunksize=_PART,
                         max_concurrency=_PARALLEL_PARTS)

    def delete_objects(self, paths: list[str]) -> None:
        if paths:
            # One DeleteObjects request per 1,000 keys.
            self.fs.rm(paths)

    def abort_uploads(self, bucket: str, prefix: str) -> None:
        listing = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix)
        for upload in listing.get("Uploads", []):
            self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def is_access_denied(self, exc: BaseException) -> bool:
        error = _client_error(exc)
        return isinstance(exc, PermissionError) or (error is not None and error[1] in (401, 403))
