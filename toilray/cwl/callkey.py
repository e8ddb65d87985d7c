"""What goes into the call-cache key of a CWL tool invocation (``--cachedir``).

cwltool keys its own cache by the command line, the input files (size and modification time,
or checksum) and the requirements that change what a tool does: DockerRequirement,
EnvVarRequirement, InitialWorkDirRequirement, ShellCommandRequirement and NetworkAccess. The
same holds here, expressed in what is stable across runs and machines: the tool's document
(which makes the command line from the inputs; the workflow file's own path is left out), the
inherited requirements of those classes, the input object with every File and Directory by
content (``toilray.callCache`` digests them; paths and job store IDs are left out), and the
container: the image's ID as the engine reports it, when the tool runs in one. Resource
requirements are left out, as cwltool leaves them out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from typing import Any

from toilray.callCache import CallIdentity
from toilray.cwl import files
from toilray.fileStores import FileID

# The requirement classes cwltool puts in its cache key.
KEY_REQUIREMENTS = ("DockerRequirement", "EnvVarRequirement", "InitialWorkDirRequirement",
                    "ShellCommandRequirement", "NetworkAccess")
# The document names things by the workflow file's URI ('file:///dir/wf.cwl#step/inp').
_DOCUMENT_URI = re.compile(r"file://[^\"#]*#")
_INSPECT_TIMEOUT_S = 60


def tool_identity(document: str, requirements: str, hints: str, job_order: Any, runtime: dict[str, Any],
                  manifests: files.ManifestCache) -> CallIdentity:
    inherited = [entry for entry in [*json.loads(requirements), *json.loads(hints)]
                 if entry.get("class") in KEY_REQUIREMENTS]
    code = hashlib.sha256(_DOCUMENT_URI.sub("#", document).encode()
                          + json.dumps(inherited, sort_keys=True).encode()).hexdigest()
    image = _image(json.loads(document), inherited, runtime)
    return CallIdentity("cwl", code, _by_content(job_order, manifests), {"image": image})


def _by_content(value: Any, manifests: files.ManifestCache) -> Any:
    """The input object with stored files as FileIDs (counted by content) and without what
    changes from run to run (paths, job store locations, literals' random names)."""
    if isinstance(value, list):
        return [_by_content(item, manifests) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("class") not in ("File", "Directory"):
        return {key: _by_content(item, manifests) for key, item in value.items()}
    location = str(value.get("location", ""))
    kept = {key: _by_content(item, manifests) for key, item in value.items()
            if key not in ("location", "path", "dirname", "listing")}
    if location.startswith(files.FILE_SCHEME):
        kept["content"] = FileID(files.file_id_of(location), 0)
    elif location.startswith(files.DIR_SCHEME):
        kept["tree"] = {rel: None if file_id is None else FileID(file_id, 0)
                        for rel, file_id in manifests.subtree(location).items()}
    elif not files.is_literal(location):
        kept["location"] = location
    if "listing" in value and not location.startswith(files.DIR_SCHEME):
        kept["listing"] = _by_content(value["listing"], manifests)
    return kept


def _image(document: dict[str, Any], inherited: list[dict[str, Any]], runtime: dict[str, Any]) -> Any:
    """The container image the tool runs in: its name and the engine's ID for it."""
    if runtime.get("use_container") is False:
        return None
    found = None
    for entry in [*document.get("requirements", ()), *document.get("hints", ()), *inherited]:
        if entry.get("class") == "DockerRequirement":
            found = entry
            break
    if found is None:
        return runtime.get("default_container")
    name = found.get("dockerImageId") or found.get("dockerPull")
    if not name:
        return found
    return {"name": name, "id": _image_id(str(name), runtime)}


def _image_id(name: str, runtime: dict[str, Any]) -> str | None:
    """What the engine calls the image (its content digest); None when it does not have it yet
    (then this call's key differs from the runs after the image is pulled: one more miss)."""
    command = "podman" if runtime.get("podman") else "docker"
    environment = dict(os.environ)
    if runtime.get("docker_host") and command == "docker":
        environment["DOCKER_HOST"] = runtime["docker_host"]
    try:
        done = subprocess.run([command, "image", "inspect", "--format", "{{.Id}}", name], capture_output=True,
                              text=True, timeout=_INSPECT_TIMEOUT_S, env=environment)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
