"""duet's gRPC interceptors: KServe's exception mapping with retry-after, the optional bearer token, and the
refusal of KServe's model repository methods."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from grpc import (
    HandlerCallDetails,
    RpcMethodHandler,
    ServicerContext,
    StatusCode,
    aio,
    unary_unary_rpc_method_handler,
)
from kserve.errors import ModelNotReady, ServerNotReady
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor

from .access import OPEN_GRPC_METHODS, check_bearer_token
from .errors import DuetError
from .kserve_compat import MODEL_REPOSITORY_GRPC_METHODS, NO_MODEL_REPOSITORY


class RetryAfterInterceptor(ExceptionToStatusInterceptor):
    """KServe's exception mapping, plus a `retry-after` trailing metadata entry (seconds) where a client
    should retry later (a DuetError with `retry_later`, a model or server not ready), as REST sends the
    Retry-After header."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__()
        self.retry_after_seconds = retry_after_seconds

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: ServicerContext,
                               method_name: str) -> None:
        # KServe answers ModelNotReady and ServerNotReady UNAVAILABLE, as REST answers them 503.
        retry = ((isinstance(ex, DuetError) and ex.retry_later)
                 or isinstance(ex, (ModelNotReady, ServerNotReady)))
        if retry:
            context.set_trailing_metadata((("retry-after", str(self.retry_after_seconds)),))
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class BearerTokenInterceptor(aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) calls without `authorization: Bearer <token>` metadata, except health
    probes."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_service(
        self,
        continuation: Callable[[HandlerCallDetails], Awaitable[RpcMethodHandler]],
        handler_call_details: HandlerCallDetails,
    ) -> RpcMethodHandler:
        if handler_call_details.method in OPEN_GRPC_METHODS:
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            check_bearer_token(str(metadata.get("authorization", "")), self.token)
        except DuetError as error:
            refusal = error

            async def refuse(_: Any, context: ServicerContext) -> None:
                await context.abort(refusal.status_code, refusal.message)

            return unary_unary_rpc_method_handler(refuse)
        return await continuation(handler_call_details)


class NoModelRepositoryInterceptor(aio.ServerInterceptor):
    """Refuses KServe's model repository methods (UNIMPLEMENTED): load and unload are not for clients."""

    async def intercept_service(
        self,
        continuation: Callable[[HandlerCallDetails], Awaitable[RpcMethodHandler]],
        handler_call_details: HandlerCallDetails,
    ) -> RpcMethodHandler:
        if handler_call_details.method not in MODEL_REPOSITORY_GRPC_METHODS:
            return await continuation(handler_call_details)

        async def refuse(_: Any, context: ServicerContext) -> None:
            await context.abort(StatusCode.UNIMPLEMENTED, NO_MODEL_REPOSITORY)

        return unary_unary_rpc_method_handler(refuse)


def duet_grpc_interceptors(retry_after_seconds: int,
                           bearer_token: str | None) -> tuple[aio.ServerInterceptor, ...]:
    """KServe's logging, then the token check where a token is set, then the exception mapping."""
    interceptors: list[aio.ServerInterceptor] = [LoggingInterceptor(), NoModelRepositoryInterceptor()]
    if bearer_token:
        interceptors.append(BearerTokenInterceptor(bearer_token))
    interceptors.append(RetryAfterInterceptor(retry_after_seconds))
    return tuple(interceptors)
