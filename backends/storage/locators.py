"""From a job store locator or a file URL to an ``ObjectStorage`` on the right service.

Job store locators: ``s3://bucket/prefix`` and Toil's ``aws:REGION:BUCKET``;
``gs://bucket/prefix`` and Toil's ``google:PROJECT:BUCKET``. Clients are made once per
process and configuration (making one costs tens of milliseconds), keyed by the environment
variables that choose the endpoint and credentials, so a changed environment gets a new one.
"""

from __future__ import annotations

import os
import threading

from toilray.backends.storage.faults import StorageConfigurationError
from toilray.backends.storage.objects import ObjectStorage, check_root
from toilray.backends.storage.services import ObjectService

_ENVIRONMENT = (
    "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_REGION",
    "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
)
_services: dict[tuple[str, str | None, tuple[str | None, ...]], ObjectService] = {}
_services_lock = threading.Lock()


def service(scheme: str, qualifier: str | None = None) -> ObjectService:
    """The client for ``scheme`` ('s3' or 'gs'), in a region (S3) or project (GCS)."""
    key = (scheme, qualifier, tuple(os.environ.get(name) for name in _ENVIRONMENT))
    with _services_lock:
        found = _services.get(key)
        if found is None:
            if scheme == "s3":
                from toilray.backends.storage.s3 import S3Service

                found = S3Service(region=qualifier)
            else:
                from toilray.backends.storage.gcs import GCSService

                found = GCSService(project=qualifier)
            _services[key] = found
        return found


def _check_bucket(scheme: str, bucket: str, locator: str) -> None:
    if scheme == "s3":
        from toilray.backends.storage.s3 import check_bucket_name
    else:
        from toilray.backends.storage.gcs import check_bucket_name
    check_bucket_name(bucket, locator)


def split_object_url(url: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b`` -> ('s3', 'bucket', 'a/b')."""
    scheme, _, rest = url.partition("://")
    bucket, _, path = rest.partition("/")
    if scheme not in ("s3", "gs") or not bucket:
        raise StorageConfigurationError(f"'{url}' is not an s3:// or gs:// URL naming a bucket")
    return scheme, bucket, path


def open_job_store(kind: str, rest: str, locator: str, verify_checksums: bool) -> ObjectStorage:
    """The storage of a job store locator of kind 's3', 'gs', 'aws' or 'google'."""
    if kind in ("s3", "gs"):
        scheme, qualifier = kind, None
        bucket, _, root = rest.partition("/")
    else:
        scheme = "s3" if kind == "aws" else "gs"
        qualifier, sep, bucket = rest.partition(":")
        root = ""
        if not sep or not qualifier:
            what = "REGION" if kind == "aws" else "PROJECT"
            raise StorageConfigurationError(f"'{locator}' should be {kind}:{what}:BUCKET")
    _check_bucket(scheme, bucket, locator)
    check_root(root, locator)
    return ObjectStorage(service(scheme, qualifier), bucket, root, locator, verify_checksums=verify_checksums)


def open_url(url: str, verify_checksums: bool) -> tuple[ObjectStorage, str]:
    """Storage for a whole bucket and the key that ``url`` names in it."""
    scheme, bucket, key = split_object_url(url)
    if not key or key.endswith("/"):
        raise StorageConfigurationError(f"'{url}' names no object (it ends at a bucket or a directory)")
    _check_bucket(scheme, bucket, url)
    return ObjectStorage(service(scheme), bucket, "", url, verify_checksums=verify_checksums), key
