"""The WES 1.1 schema as pydantic models: what the OpenAPI document says, and what the server
checks its responses against before sending them."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from toilray.server.state import ALL_STATES

State = Enum("State", {name: name for name in ALL_STATES}, type=str)  # type: ignore[misc]


class ServiceType(BaseModel):
    group: str
    artifact: str
    version: str


class Organization(BaseModel):
    name: str
    url: str


class WorkflowTypeVersion(BaseModel):
    workflow_type_version: list[str]


class DefaultWorkflowEngineParameter(BaseModel):
    name: str
    type: str
    default_value: str | None = None


class ServiceInfo(BaseModel):
    id: str
    name: str
    type: ServiceType
    description: str
    organization: Organization
    version: str
    workflow_type_versions: dict[str, WorkflowTypeVersion]
    supported_wes_versions: list[str]
    supported_filesystem_protocols: list[str]
    workflow_engine_versions: dict[str, str]
    default_workflow_engine_parameters: list[DefaultWorkflowEngineParameter]
    system_state_counts: dict[str, int]
    auth_instructions_url: str
    tags: dict[str, str]


class RunId(BaseModel):
    run_id: str


class RunStatus(BaseModel):
    run_id: str
    state: State


class RunSummary(RunStatus):
    start_time: str | None = None
    end_time: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class RunListResponse(BaseModel):
    runs: list[RunSummary]
    next_page_token: str


class RunRequest(BaseModel):
    workflow_params: dict[str, Any]
    workflow_type: str
    workflow_type_version: str
    tags: dict[str, str] = Field(default_factory=dict)
    workflow_engine_parameters: dict[str, str] = Field(default_factory=dict)
    workflow_engine: str | None = None
    workflow_engine_version: str | None = None
    workflow_url: str
    workflow_attachment: list[str] = Field(default_factory=list)


class Log(BaseModel):
    name: str | None = None
    cmd: list[str] | None = None
    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None
    system_logs: list[str] | None = None


class TaskLog(Log):
    id: str
    name: str
    tes_uri: str | None = None


class TaskListResponse(BaseModel):
    task_logs: list[TaskLog]
    next_page_token: str


class RunLog(BaseModel):
    run_id: str
    request: RunRequest
    state: State
    run_log: Log
    task_logs_url: str
    task_logs: list[TaskLog] | None = None
    outputs: dict[str, Any]


class ErrorResponse(BaseModel):
    msg: str
    status_code: int
