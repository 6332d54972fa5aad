"""KServe's REST and gRPC servers bound to a chosen address, with Retry-After and an optional token on gRPC.

KServe 0.21 hard-codes its listeners to every interface (`0.0.0.0` for uvicorn, `[::]` for gRPC) and has no
flag to change that. A container wants every interface; the local stack wants 127.0.0.1 only, so nothing on
the network reaches a developer's machine. `BoundModelServer` is KServe's ModelServer with the address as a
parameter; everything else (workers, grace period, gRPC message limits from KServe's own flags) is KServe's.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

from grpc import (
    HandlerCallDetails,
    RpcMethodHandler,
    ServicerContext,
    StatusCode,
    aio,
    unary_unary_rpc_method_handler,
)
from kserve import ModelServer
from kserve.errors import ModelNotReady, ServerNotReady
from kserve.model_server import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import args as kserve_args
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess
from kserve.protocol.rest.server import RESTServer

from .errors import DuetError

# Statuses after which a client should come back later: overloaded (429) and predictor unavailable (503).
RETRY_CODES = frozenset({StatusCode.RESOURCE_EXHAUSTED, StatusCode.UNAVAILABLE})
# gRPC methods answered without a token: health probes.
OPEN_METHODS = ("/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady",
                "/inference.GRPCInferenceService/ModelReady")


class RetryAfterInterceptor(ExceptionToStatusInterceptor):
    """KServe's exception mapping, plus a `retry-after` trailing metadata entry (seconds) where a client should
    retry later (a duet 429/503, a model or server not ready), as REST sends the Retry-After header."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__()
        self.retry_after_seconds = retry_after_seconds

    async def handle_exception(self, ex: Exception, request_or_iterator: Any, context: ServicerContext,
                               method_name: str) -> None:
        retry = (isinstance(ex, DuetError) and ex.status_code in RETRY_CODES) or isinstance(
            ex, (ModelNotReady, ServerNotReady))  # KServe answers these UNAVAILABLE
        if retry:
            context.set_trailing_metadata((("retry-after", str(self.retry_after_seconds)),))
        await super().handle_exception(ex, request_or_iterator, context, method_name)


class BearerTokenInterceptor(aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) calls without `authorization: Bearer <token>` metadata, except health probes."""

    def __init__(self, token: str) -> None:
        self.token = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[HandlerCallDetails], Awaitable[RpcMethodHandler]],
        handler_call_details: HandlerCallDetails,
    ) -> RpcMethodHandler:
        if handler_call_details.method in OPEN_METHODS:
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        scheme, _, token = str(metadata.get("authorization", "")).partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self.token):
            return await continuation(handler_call_details)

        async def refuse(_: Any, context: ServicerContext) -> None:
            await context.abort(StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer' token is required")

        return unary_unary_rpc_method_handler(refuse)


class BoundGRPCServer(GRPCServer):
    """KServe's gRPC server on `address` instead of every interface, with duet's interceptors."""

    def __init__(self, address: str, interceptors: tuple[aio.ServerInterceptor, ...], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = address
        self._interceptors = interceptors

    async def start(self, max_workers: int) -> None:
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=self._interceptors,
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        host = f"[{self._address}]" if ":" in self._address else self._address
        self._server.add_insecure_port(f"{host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


class LeanRESTServer(RESTServer):
    """KServe's REST server without its timing middleware (unless an access-log format asks for KServe's stack).

    That middleware matches every request's route a second time to name a metric, reads the CPU clock and formats
    two `kserve.trace` lines per request that duet's log config drops (they duplicate the access log and the
    `duet_*` histograms): CPU spent on every request for nothing (py-spy, docs/benchmarks.md).
    """

    def _add_middlewares(self, app: Any) -> None:
        if self.access_log_format:
            super()._add_middlewares(app)


class BoundModelServer(ModelServer):
    """KServe's ModelServer whose REST and gRPC listeners bind `bind_address` (default: every interface)."""

    def __init__(self, *, bind_address: str = "0.0.0.0", retry_after_seconds: int = 1,
                 bearer_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_address = bind_address
        interceptors: list[aio.ServerInterceptor] = [LoggingInterceptor()]
        if bearer_token:
            interceptors.append(BearerTokenInterceptor(bearer_token))
        interceptors.append(RetryAfterInterceptor(retry_after_seconds))
        self.grpc_interceptors = tuple(interceptors)

    def start(self, models: list) -> None:
        """KServe's start, with the listeners bound to `bind_address`."""
        self._register_and_check_atleast_one_model_is_ready(models)
        rest_options = {
            "access_log_format": self.access_log_format, "workers": self.workers, "grace_period": self.grace_period,
            "event_loop": self.event_loop, "timeout_keep_alive": self.timeout_keep_alive,
            "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile,
        }
        if self.workers > 1:
            self._rest_multiprocess_server = RESTServerMultiProcess(
                FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
                log_config_file=kserve_args.log_config_file, **rest_options,
            )
            # The parent binds the socket its workers share; uvicorn reads the address from its config.
            self._rest_multiprocess_server._rest_server.config.host = self.bind_address
            # The workers run (unpickle) this server object: make it the lean one; it only overrides a method.
            self._rest_multiprocess_server._rest_server.__class__ = LeanRESTServer
            self.servers.append(self._rest_multiprocess_server.start())
        else:
            self._rest_server = LeanRESTServer(
                FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
                **rest_options,
            )
            self._rest_server.config.host = self.bind_address
            self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = BoundGRPCServer(
                self.bind_address, self.grpc_interceptors, self.grpc_port, self.dataplane,
                self.model_repository_extension, kwargs=vars(kserve_args), grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())
