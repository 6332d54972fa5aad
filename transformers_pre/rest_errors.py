"""The one REST error path: every refusal is a DuetError, rendered here as a v2 error body `{"error":
"..."}`; so are the refusals of Starlette's router (404 no such route, 405 wrong method), which would
otherwise answer FastAPI's `{"detail": ...}`."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import ModelNotFound
from starlette.exceptions import HTTPException

from .access import BodyTooLarge
from .errors import BadRequest, DuetError, NotFound

logger = logging.getLogger("duet.server")


def error_response(error: DuetError) -> JSONResponse:
    """The v2 error response of `error`, logged (its message never holds patient data)."""
    log = logger.warning if error.status < 500 else logger.error
    log("request failed: %s %s", int(error.status), error.message)
    return JSONResponse(status_code=int(error.status), content={"error": error.message},
                        headers=dict(error.headers) or None)


def describe_validation_error(error: RequestValidationError, limit: int = 3) -> str:
    """FastAPI's validation errors as one v2 error message: where and what, never the offending values
    (they may hold patient data)."""
    # KServe's infer route takes InferenceRequest or raw bytes: the bytes branch's complaint says nothing
    # useful.
    errors = ([item for item in error.errors() if tuple(item.get("loc", ()))[-1:] != ("bytes",)]
              or error.errors())
    malformed = [item for item in errors if item.get("type") == "json_invalid"]
    if malformed:
        position = tuple(malformed[0].get("loc", ()))[-1:]
        at = f" at character {position[0]}" if position and isinstance(position[0], int) else ""
        return f"the body is not valid JSON{at}; send a v2 inference request"
    problems = []
    for item in errors[:limit]:
        where = ".".join(str(part) for part in item.get("loc", ())
                         if part not in ("body", "InferenceRequest"))
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    more = len(errors) - limit
    suffix = f" (and {more} more)" if more > 0 else ""
    return "the body is not a v2 inference request: " + "; ".join(problems) + suffix


async def duet_error_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DuetError)
    return error_response(error)


async def validation_error_handler(_: Request, error: Exception) -> JSONResponse:
    """A body that is not v2 gets the v2 error body and 400, not FastAPI's 422 `{"detail": ...}`."""
    assert isinstance(error, RequestValidationError)
    return error_response(BadRequest(describe_validation_error(error)))


async def model_not_found_handler(_: Request, error: Exception) -> JSONResponse:
    """KServe's unknown model, through the one error path (KServe's own handler logs a traceback)."""
    assert isinstance(error, ModelNotFound)
    return error_response(NotFound(f"{error.reason} See GET /v2/models for the models served here."))


async def internal_error_handler(_: Request, error: Exception) -> JSONResponse:
    """Anything unexpected: 500 naming only the exception's type, and the log where it was raised; never its
    message, which may quote the input (patient data)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    logger.error("request failed: 500 %s%s", type(error).__name__, where)
    return JSONResponse(status_code=500, content={"error": f"internal error ({type(error).__name__})"})


async def body_too_large_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, BodyTooLarge)
    return error_response(error.error)


def describe_http_exception(request: Request, error: HTTPException) -> str:
    """The router's refusal as a message that says what to do (never the body: it may hold patient data)."""
    where = f"{request.method} {request.url.path}"
    if error.status_code == 404:
        return f"no route {where}; see /v2/models for the models and docs/api.md for the routes"
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        return f"method {request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    return f"{where}: {error.detail}"


async def http_exception_handler(request: Request, error: Exception) -> JSONResponse:
    """Starlette's HTTPException (the router's 404 and 405) in the v2 error shape, with its Allow header."""
    assert isinstance(error, HTTPException)
    message = describe_http_exception(request, error)
    log = logger.warning if error.status_code < 500 else logger.error
    log("request failed: %s %s", error.status_code, message)
    return JSONResponse(status_code=error.status_code, content={"error": message}, headers=error.headers)


# Starlette picks the handler of the most specific exception class, so these win over KServe's catch-alls.
EXCEPTION_HANDLERS = {
    DuetError: duet_error_handler,
    RequestValidationError: validation_error_handler,
    BodyTooLarge: body_too_large_handler,
    ModelNotFound: model_not_found_handler,
    Exception: internal_error_handler,
    HTTPException: http_exception_handler,
}
