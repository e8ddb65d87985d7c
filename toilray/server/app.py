"""The HTTP side of ``toilray server``: WES 1.1 under /ga4gh/wes/v1, bearer tokens, the page at /.

Requests are checked against the same models the OpenAPI document is made from (FastAPI), and
every response is validated against its model before it is sent. Errors are WES ErrorResponses.
"""

# No "from __future__ import annotations": FastAPI reads the routes' annotations, which name locals.

import hmac
import os
import time
from importlib.metadata import version
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toilray.exceptions import ToilrayError
from toilray.server import models, page
from toilray.server.attachments import AttachmentError
from toilray.server.runs import (
    ALLOWED_ENGINE_PARAMETERS,
    NoSuchRunError,
    RunManager,
    RunRequestError,
    workflow_types,
)
from toilray.server.state import RunRecord

BASE_PATH = "/ga4gh/wes/v1"
PAGE_SIZE = 100
# Page tokens are positions (digits); anything else is a malformed request.
PageToken = Annotated[str, Query(pattern=r"^[0-9]*$", max_length=18)]



class ServerConfigError(ToilrayError):
    """The server cannot start as configured (its options or token)."""


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorResponse, "description": text}
    for code, text in ((400, "The request is malformed"), (401, "No valid bearer token"),
                       (403, "Not allowed"), (404, "No such run or task"), (500, "An unexpected error"))
}


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, counting what arrives (chunked too)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _TooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"msg": f"the request is over the upload limit of {limit} bytes", "status_code": 413},
                        status_code=413)


def _iso(when: float | None) -> str | None:
    return None if when is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def create_app(manager: RunManager, token: str | None, swagger_ui: bool = False,
               cors_origins: list[str] | None = None) -> FastAPI:
    """The ASGI application; ``token`` None serves without authentication (loopback only)."""
    app = FastAPI(title="toilray WES", version=version("toilray"),
                  description="GA4GH Workflow Execution Service 1.1, running workflows on Ray.",
                  openapi_url=f"{BASE_PATH}/openapi.json",
                  docs_url=f"{BASE_PATH}/ui" if swagger_ui else None, redoc_url=None)
    bearer = HTTPBearer(auto_error=False, description="The server's token (--token-file or TOILRAY_WES_TOKEN)")

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "a valid bearer token is needed (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    # Starlette's own errors (a malformed multipart body, a wrong method) are WES ErrorResponses too.
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"msg": str(exc.detail), "status_code": exc.status_code},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors())
        return JSONResponse({"msg": f"invalid request: {problems}", "status_code": 400}, status_code=400)

    def run_log(record: RunRecord, request: Request) -> models.RunLog:
        base = str(request.base_url).rstrip("/") + f"{BASE_PATH}/runs/{record.run_id}"
        started = record.cmd != []
        return models.RunLog(
            run_id=record.run_id, request=models.RunRequest(**record.request), state=models.State(record.state),
            run_log=models.Log(name=record.request["workflow_url"], cmd=record.cmd or None,
                               start_time=_iso(record.start_time), end_time=_iso(record.end_time),
                               stdout=f"{base}/stdout" if started else None,
                               stderr=f"{base}/stderr" if started else None,
                               exit_code=record.exit_code,
                               system_logs=record.system_log.splitlines()),
            task_logs_url=f"{base}/tasks", task_logs=None, outputs=manager.outputs(record))

    def record_of(run_id: str) -> RunRecord:
        try:
            return manager.get(run_id)
        except NoSuchRunError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get(f"{BASE_PATH}/service-info", response_model=models.ServiceInfo, responses=_ERRORS,
             operation_id="GetServiceInfo", tags=["WES"])
    def service_info() -> models.ServiceInfo:
        return models.ServiceInfo(
            id="org.toilray.wes", name="toilray WES", description="Workflows run by toilray on Ray",
            type=models.ServiceType(group="org.ga4gh", artifact="wes", version="1.1.0"),
            organization=models.Organization(name="toilray", url="https://github.com/DataBiosphere/toil"),
            version=version("toilray"),
            workflow_type_versions={t.name: models.WorkflowTypeVersion(workflow_type_version=list(t.versions))
                                    for t in workflow_types()},
            supported_wes_versions=["1.0.0", "1.1.0"],
            supported_filesystem_protocols=["file", "http", "https"],
            workflow_engine_versions={"toilray": version("toilray")},
            default_workflow_engine_parameters=[
                models.DefaultWorkflowEngineParameter(name=name, type="string", default_value=None)
                for name in ALLOWED_ENGINE_PARAMETERS],
            system_state_counts=manager.db.state_counts(),
            auth_instructions_url="" if token is None else
            "Send 'Authorization: Bearer TOKEN' with the token the server was started with",
            tags={"auth": "none" if token is None else "bearer"})

    @app.get(f"{BASE_PATH}/runs", response_model=models.RunListResponse, responses=_ERRORS,
             dependencies=guarded, operation_id="ListRuns", tags=["WES"])
    def list_runs(page_size: Annotated[int, Query(ge=1, le=1000)] = PAGE_SIZE,
                  page_token: PageToken = "") -> models.RunListResponse:
        records, more = manager.db.page(int(page_token) if page_token else None, page_size)
        return models.RunListResponse(
            runs=[models.RunSummary(run_id=r.run_id, state=models.State(r.state), start_time=_iso(r.start_time),
                                    end_time=_iso(r.end_time), tags=r.request.get("tags") or {})
                  for r in records],
            next_page_token="" if more is None else str(more))

    @app.post(f"{BASE_PATH}/runs", response_model=models.RunId,
              responses={**_ERRORS, 413: {"model": models.ErrorResponse, "description": "Upload too large"}},
              dependencies=guarded, operation_id="RunWorkflow", tags=["WES"])
    def run_workflow(workflow_type: Annotated[str, Form()], workflow_type_version: Annotated[str, Form()],
                     workflow_url: Annotated[str, Form()],
                     workflow_params: Annotated[str, Form()] = "{}",
                     tags: Annotated[str, Form()] = "{}",
                     workflow_engine_parameters: Annotated[str, Form()] = "{}",
                     workflow_engine: Annotated[str, Form()] = "",
                     workflow_engine_version: Annotated[str, Form()] = "",
                     workflow_attachment: Annotated[list[UploadFile], File()] = []) -> models.RunId:  # noqa: B006
        fields = {"workflow_type": workflow_type, "workflow_type_version": workflow_type_version,
                  "workflow_url": workflow_url, "workflow_params": workflow_params, "tags": tags,
                  "workflow_engine_parameters": workflow_engine_parameters, "workflow_engine": workflow_engine,
                  "workflow_engine_version": workflow_engine_version}
        files = [(upload.filename or "", upload.file) for upload in workflow_attachment]
        try:
            return models.RunId(run_id=manager.submit(fields, files))
        except AttachmentError as exc:
            raise HTTPException(413 if exc.too_large else 400, str(exc)) from None
        except RunRequestError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get(f"{BASE_PATH}/runs/{{run_id}}", response_model=models.RunLog, responses=_ERRORS,
             dependencies=guarded, operation_id="GetRunLog", tags=["WES"])
    def get_run_log(run_id: str, request: Request) -> models.RunLog:
        return run_log(record_of(run_id), request)

    @app.get(f"{BASE_PATH}/runs/{{run_id}}/status", response_model=models.RunStatus, responses=_ERRORS,
             dependencies=guarded, operation_id="GetRunStatus", tags=["WES"])
    def get_run_status(run_id: str) -> models.RunStatus:
        record = record_of(run_id)
        return models.RunStatus(run_id=record.run_id, state=models.State(record.state))

    @app.post(f"{BASE_PATH}/runs/{{run_id}}/cancel", response_model=models.RunId, responses=_ERRORS,
              dependencies=guarded, operation_id="CancelRun", tags=["WES"])
    def cancel_run(run_id: str) -> models.RunId:
        record_of(run_id)
        manager.cancel(run_id)
        return models.RunId(run_id=run_id)

    def task_logs(run_id: str, request: Request) -> list[models.TaskLog]:
        base = str(request.base_url).rstrip("/") + f"{BASE_PATH}/runs/{run_id}/tasks"
        return [models.TaskLog(id=job.job_id, name=job.name,
                               exit_code=0 if job.finished else (1 if job.failure else None),
                               stderr=f"{base}/{job.job_id}/log" if job.logs or job.failure else None,
                               system_logs=[job.failure] if job.failure else [])
                for job in manager.tasks(run_id)]

    @app.get(f"{BASE_PATH}/runs/{{run_id}}/tasks", response_model=models.TaskListResponse, responses=_ERRORS,
             dependencies=guarded, operation_id="ListTasks", tags=["WES"])
    def list_tasks(run_id: str, request: Request,
                   page_size: Annotated[int, Query(ge=1, le=10000)] = 1000,
                   page_token: PageToken = "") -> models.TaskListResponse:
        record_of(run_id)
        tasks = task_logs(run_id, request)
        start = int(page_token) if page_token else 0
        end = start + page_size
        return models.TaskListResponse(task_logs=tasks[start:end],
                                       next_page_token=str(end) if end < len(tasks) else "")

    def find_task(run_id: str, task_id: str, request: Request) -> models.TaskLog:
        record_of(run_id)
        for task in task_logs(run_id, request):
            if task.id == task_id:
                return task
        raise HTTPException(404, f"run {run_id} has no task {task_id!r}")

    @app.get(f"{BASE_PATH}/runs/{{run_id}}/tasks/{{task_id}}", response_model=models.TaskLog, responses=_ERRORS,
             dependencies=guarded, operation_id="GetTask", tags=["WES"])
    def get_task(run_id: str, task_id: str, request: Request) -> models.TaskLog:
        return find_task(run_id, task_id, request)

    text_responses: dict[int | str, dict[str, Any]] = {
        **_ERRORS, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The log"}}

    @app.get(f"{BASE_PATH}/runs/{{run_id}}/tasks/{{task_id}}/log", response_model=None,
             responses=text_responses, dependencies=guarded, operation_id="GetTaskLog", tags=["toilray"])
    def get_task_log(run_id: str, task_id: str) -> PlainTextResponse:
        record_of(run_id)
        for job in manager.tasks(run_id):
            if job.job_id == task_id:
                parts = [f"=== attempt {n} ===\n{text}" for n, text in job.logs]
                if job.failure:
                    parts.append(f"=== failure ===\n{job.failure}")
                return PlainTextResponse("\n".join(parts))
        raise HTTPException(404, f"run {run_id} has no task {task_id!r}")

    def stream_log(run_id: str, stream: str) -> PlainTextResponse:
        record_of(run_id)
        try:
            with open(manager.log_path(run_id, stream), encoding="utf-8", errors="replace") as handle:
                return PlainTextResponse(handle.read())
        except FileNotFoundError:
            return PlainTextResponse("")

    @app.get(f"{BASE_PATH}/runs/{{run_id}}/stdout", response_model=None, responses=text_responses,
             dependencies=guarded, operation_id="GetRunStdout", tags=["toilray"])
    def get_stdout(run_id: str) -> PlainTextResponse:
        return stream_log(run_id, "stdout")

    @app.get(f"{BASE_PATH}/runs/{{run_id}}/stderr", response_model=None, responses=text_responses,
             dependencies=guarded, operation_id="GetRunStderr", tags=["toilray"])
    def get_stderr(run_id: str) -> PlainTextResponse:
        return stream_log(run_id, "stderr")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page.PAGE.replace("@BASE@", BASE_PATH).replace("@AUTH@", "0" if token is None else "1"))

    _drop_unused_422(app)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(_BodyLimit, limit=manager.settings.max_upload_bytes)
    return app


def _drop_unused_422(app: FastAPI) -> None:
    """Validation errors are answered with 400 (an ErrorResponse), so the 422 FastAPI documents
    for every route does not happen: the document must say what the server really answers."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def check_listen(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without authentication."""
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        raise ServerConfigError(f"refusing to listen on {host} without authentication: --insecure-no-auth is "
                           "only for loopback (127.0.0.1); give a token with --token-file or TOILRAY_WES_TOKEN")


def read_token(token_file: str | None) -> str | None:
    """The bearer token: from ``token_file``, else $TOILRAY_WES_TOKEN; None if neither."""
    if token_file:
        with open(token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    else:
        token = os.environ.get("TOILRAY_WES_TOKEN", "").strip()
    return token or None

