"""Job resource requirements: parsing Toil's spellings into plain numbers.

A job's requirements travel to the leader as a :class:`Requirements` (numbers only). Values
that are not known until other jobs have run (``PromisedRequirement``) are resolved by the
worker before the job is scheduled for real.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from toilray.lib.conversions import human2bytes, readable_size

_GPU_KINDS = {"gpu", "nvidia", "amd", "cuda", "rocm", "opencl"}

REQUIREMENT_KEYS = ("cores", "memory", "disk", "accelerators", "preemptible")


@dataclass(frozen=True, slots=True)
class Requirements:
    cores: float
    memory: int
    disk: int
    accelerators: tuple[dict[str, Any], ...]
    preemptible: bool

    @property
    def gpus(self) -> float:
        return float(sum(a.get("count", 1) for a in self.accelerators))

    def with_memory_at_least(self, memory: int) -> Requirements:
        return replace(self, memory=max(self.memory, memory))

    def describe(self) -> str:
        text = f"{self.cores:g} core(s), {readable_size(self.memory)} of memory, {readable_size(self.disk)} of disk"
        if self.accelerators:
            text += f", {self.gpus:g} accelerator(s)"
        return text

    def to_json(self) -> dict[str, Any]:
        return {key: list(value) if key == "accelerators" else value
                for key, value in ((k, getattr(self, k)) for k in REQUIREMENT_KEYS)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Requirements:
        return cls(cores=float(data["cores"]), memory=int(data["memory"]), disk=int(data["disk"]),
                   accelerators=tuple(data["accelerators"]), preemptible=bool(data["preemptible"]))

    @classmethod
    def with_defaults(cls, values: Mapping[str, Any], defaults: Requirements) -> Requirements:
        """Parsed ``values`` (keys of REQUIREMENT_KEYS), each missing one taken from ``defaults``."""
        return cls(**{key: getattr(defaults, key) if values.get(key) is None else values[key]
                      for key in REQUIREMENT_KEYS})


# Toil 9's built-in defaults (``G`` is 10^9 bytes, ``Gi`` 2^30): what --defaultCores,
# --defaultMemory, --defaultDisk, ... start from, and what a job built outside a run reports.
TOIL_DEFAULTS = Requirements(cores=1.0, memory=2 * 2**30, disk=2 * 2**30, accelerators=(), preemptible=False)


def parse_requirement(key: str, value: Any) -> Any:
    """One requirement in any of Toil's spellings, as the number (or tuple, or bool) it means."""
    if key in ("memory", "disk"):
        return parse_memory(value, key)
    if key == "cores":
        return parse_cores(value)
    if key == "accelerators":
        return parse_accelerators(value)
    if key == "preemptible":
        return parse_preemptible(value)
    raise ValueError(f"Unknown requirement {key!r} (expected one of {', '.join(REQUIREMENT_KEYS)})")


def parse_memory(value: Any, what: str = "memory") -> int:
    try:
        return human2bytes(value)
    except ValueError as exc:
        raise ValueError(f"Invalid {what} requirement {value!r}: {exc}") from None


def parse_cores(value: Any) -> float:
    try:
        cores = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid cores requirement {value!r}: expected a number") from None
    if cores < 0:
        raise ValueError(f"Invalid cores requirement {value!r}: cannot be negative")
    return cores


def parse_preemptible(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"Invalid preemptible requirement {value!r}: expected true or false")


def _parse_one_accelerator(spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict):
        return {"count": 1, "kind": "gpu", **spec}
    if isinstance(spec, int):
        return {"count": spec, "kind": "gpu"}
    if not isinstance(spec, str):
        raise ValueError(f"Invalid accelerator requirement {spec!r}")
    text, _, count = spec.partition(":")
    if not count and text.isdigit():
        return {"count": int(text), "kind": "gpu"}
    parsed: dict[str, Any] = {"count": int(count) if count else 1, "kind": "gpu"}
    parts = text.split("|")
    if len(parts) > 3:
        raise ValueError(f"Invalid accelerator requirement {spec!r}: expected model|brand|api[:count]")
    for part in parts:
        lowered = part.lower()
        if lowered in ("cuda", "rocm", "opencl"):
            parsed["api"] = lowered
            if lowered != "opencl":
                # The API implies the vendor, as in Toil: CUDA is NVIDIA's, ROCm is AMD's.
                parsed.setdefault("brand", "nvidia" if lowered == "cuda" else "amd")
        elif lowered in ("nvidia", "amd"):
            parsed["brand"] = lowered
        elif lowered and lowered not in _GPU_KINDS:
            parsed["model"] = part
    if "brand" not in parsed and "model" in parsed:
        # Models often start with their brand ('nvidia-tesla-k80'): Toil's guess, made here too.
        for brand in ("nvidia", "amd"):
            if parsed["model"].lower().startswith(brand):
                parsed["brand"] = brand
    return parsed


def parse_accelerators(value: Any) -> tuple[dict[str, Any], ...]:
    """Toil's accelerator forms: a count, 'model|brand|api[:count]', a dict, or a list of them."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    parsed = [_parse_one_accelerator(item.strip() if isinstance(item, str) else item) for item in items]
    return tuple(a for a in parsed if a["count"] > 0)
