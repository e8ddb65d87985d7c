"""Google Cloud Storage for the object-store job store, through gcsfs.

The endpoint comes from ``STORAGE_EMULATOR_HOST`` when it is set (then anonymous access is
used, as emulators expect); otherwise from Google's default credential chain. Conditional
writes use the JSON API's ``ifGenerationMatch`` on a single-request (multipart) upload: that
is where GCS checks the precondition before the object changes, and the kind of upload that
emulators enforce it on too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from toilray.backends.storage.faults import StorageConfigurationError
from toilray.backends.storage.services import CREATE_ONLY, ObjectService, ObjectStat

_PART = 32 << 20  # resumable upload chunk: a multiple of 256 KiB, as GCS requires; larger is faster
_PARALLEL_DELETES = 32
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_BOUNDARY = "toilray-object-boundary"


def check_bucket_name(bucket: str, locator: str) -> None:
    if not _BUCKET_NAME.match(bucket):
        raise StorageConfigurationError(
            f"'{bucket}' in '{locator}' is not a valid GCS bucket name "
            "(3-63 lowercase letters, digits, dots, hyphens and underscores)"
        )


def emulator_from_environment() -> str | None:
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def _status(exc: BaseException) -> int | None:
    current: BaseException | None = exc
    while current is not None:
        code = getattr(current, "code", None)
        if isinstance(code, int):
            return code
        current = current.__cause__ or current.__context__
    return None


class GCSService(ObjectService):
    scheme = "gs"

    def __init__(self, project: str | None = None) -> None:
        # gcsfs otherwise probes every bucket for zonal/HNS features over gRPC, which stalls
        # for a minute per call against emulators; toilray uses none of those features.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import gcsfs

        emulator = emulator_from_environment()
        self.fs = gcsfs.GCSFileSystem(
            # Emulators ignore the project, but gcsfs warns when there is none.
            project=project or os.environ.get("GOOGLE_CLOUD_PROJECT") or ("emulated" if emulator else None),
            token="anon" if emulator else None,
            endpoint_url=emulator,
            use_listings_cache=False,
            skip_instance_cache=True,
            requests_timeout=120,
        )

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.fs.call("GET", "b/{}", bucket, json_out=True)
        except FileNotFoundError:
            return False
        return True

    def create_bucket(self, bucket: str) -> bool:
        try:
            self.fs.mkdir(bucket)
        except Exception as exc:
            if _status(exc) == 409:
                return False
            raise
        return True

    def delete_bucket(self, bucket: str) -> bool:
        try:
            self.fs.rmdir(bucket)
        except FileNotFoundError:
            return False
        except Exception as exc:
            if _status(exc) == 409:  # not empty
                return False
            raise
        return True

    def stat(self, path: str) -> ObjectStat:
        bucket, key, _ = self.fs.split_path(path)
        if not key:
            raise FileNotFoundError(path)
        info = self.fs.call("GET", "b/{}/o/{}", bucket, key, json_out=True)
        md5 = info.get("md5Hash")
        return ObjectStat(
            int(info["size"]), str(info["generation"]), dict(info.get("metadata") or {}),
            base64.b64decode(md5) if md5 else None,
        )

    def read_versioned(self, path: str) -> tuple[bytes, str]:
        bucket, key, _ = self.fs.split_path(path)
        headers, data = self.fs.call("GET", "b/{}/o/{}", bucket, key, alt="media")
        return bytes(data), str(headers["X-Goog-Generation"])

    def put_bytes(self, path: str, data: bytes, metadata: Mapping[str, str], precondition: str | None) -> str | None:
        bucket, key, _ = self.fs.split_path(path)
        resource: dict[str, Any] = {"name": key}
        if metadata:
            resource["metadata"] = dict(metadata)
        body = (
            f"--{_BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json.dumps(resource)}\r\n"
            f"--{_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + f"\r\n--{_BOUNDARY}--".encode()
        condition: dict[str, str] = {}
        if precondition is not None:
            condition["ifGenerationMatch"] = "0" if precondition == CREATE_ONLY else precondition
        try:
            answer = self.fs.call(
                "POST", f"{self.fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
                uploadType="multipart", headers={"Content-Type": f'multipart/related; boundary="{_BOUNDARY}"'},
                data=body, json_out=True, **condition,
            )
        except FileExistsError:  # gcsfs's name for 412 Precondition Failed
            return None
        return str(answer["generation"])

    def upload_file(self, local_path: str, path: str, metadata: Mapping[str, str], verify: bool) -> None:
        # With "md5", gcsfs compares the MD5 that GCS computed on arrival with its own.
        self.fs.put_file(local_path, path, metadata=dict(metadata), chunksize=_PART,
                         consistency="md5" if verify else "none")

    def delete_objects(self, paths: list[str]) -> None:
        # One request per object: gcsfs's batch deletes are not served by emulators, and a
        # bounded number in flight keeps large deletes quick.
        async def delete_all() -> None:
            for start in range(0, len(paths), _PARALLEL_DELETES):
                results = await asyncio.gather(
                    *(self.fs._rm_file(p) for p in paths[start:start + _PARALLEL_DELETES]), return_exceptions=True
                )
                for result in results:
                    if isinstance(result, BaseException) and not isinstance(result, FileNotFoundError):
                        raise result

        if paths:
            from fsspec.asyn import sync

            sync(self.fs.loop, delete_all)

    def is_access_denied(self, exc: BaseException) -> bool:
        if _status(exc) in (401, 403):
            return True
        return isinstance(exc, PermissionError) or (isinstance(exc, OSError) and str(exc).startswith("Forbidden"))
