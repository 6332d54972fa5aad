"""Every use of KServe's private attributes, and every KServe method copied here, in one place.

duet builds on KServe 0.21 (`kserve` in pyproject.toml). Where KServe has no public hook, this module reaches
inside it, and `tests/unit/transformers_pre/test_kserve_compat.py` pins each item: an upgrade that renames an
attribute or changes a copied method fails that test, naming the item, instead of failing a request.

Each item: what duet uses, why, and the upstream change that would let it go.
- `InferInput._raw_data` (read, set): a binary tensor read in place, never copied; a raw-bytes accessor.
- `InferenceGRPCClient._client_stub`: v2 ModelMetadata and raw ModelInfer calls; methods for both.
- `InferenceRESTClient._client`: a GET of the v2 metadata route; a metadata method.
- `RESTServer._register_endpoints`, `_add_exception_handlers`, `_add_middlewares`: duet's own app gets
  KServe's routes and handlers; an app-factory parameter on RESTServer and ModelServer.
- `RESTServerMultiProcess._rest_server`: the worker processes run duet's REST server; a REST-server
  parameter.
- a copy of `GRPCServer.start`: the bind address, duet's interceptors and servicer; `host`, `interceptors`
  and `servicer` parameters.
- a copy of `ModelServer.start`: the bind address, duet's REST and gRPC servers; a `host` parameter (and the
  two above).

Worked around with public calls elsewhere, so not here: KServe's REST binary decoding re-encodes BYTES as text
(`binary_request.py`), and its encoders drop empty outputs read as binary (`codecs.make_response`).

KServe hard-codes its listeners to every interface (`0.0.0.0` for uvicorn, `[::]` for gRPC). A container wants
every interface; the local stack wants 127.0.0.1 only, so nothing on the network reaches a developer's
machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent import futures
from typing import Any

import httpx
from fastapi import FastAPI
from grpc import aio
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, ModelServer
from kserve.model_server import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import args as kserve_args
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess
from kserve.protocol.rest.server import RESTServer

# KServe's model repository extension lets any caller load and unload served models. duet does not offer it on
# either transport: a served model changes by a rollout, never by a request.
MODEL_REPOSITORY_PATH_PREFIX = "/v2/repository"
MODEL_REPOSITORY_GRPC_METHODS = tuple(f"/inference.GRPCInferenceService/{method}"
                                      for method in ("RepositoryIndex", "RepositoryModelLoad",
                                                     "RepositoryModelUnload"))
NO_MODEL_REPOSITORY = ("duet does not offer the model repository extension: served models are not loaded or "
                       "unloaded over the API")

# sha256 of `inspect.getsource` of each KServe method copied below, as of the KServe version duet pins; the
# unit test recomputes them, so an upgrade that changes one says which copy to bring up to date.
COPIED_FROM = {
    "kserve.protocol.grpc.server.GRPCServer.start":
        "f4ea7b4eb6f0d9f7ac4947c7bda31531f4bf870529f9de0964a2dad2f6a7fb5e",
    "kserve.model_server.ModelServer.start":
        "efa96502018b04e9e1908fd8734fbddc84071d24256ae4cbd25d0e31bdd27d84",
    # Not copied, but BoundRESTServer replaces it: a change there may need the same change here.
    "kserve.protocol.rest.server.RESTServer.create_application":
        "f821f63b402457eb46c56d064d42f08d80bae9078b7a7087ff1ff0ab92fb6eb4",
}

# Builds the ASGI app a REST server (or each of its worker processes) serves.
AppFactory = Callable[[DataPlane, ModelRepositoryExtension, "str | None"], FastAPI]


def raw_input_bytes(infer_input: InferInput) -> bytes | memoryview | None:
    """The raw bytes of a binary-extension input, or None for an input sent as JSON `data`."""
    return infer_input._raw_data


def set_raw_input_bytes(infer_input: InferInput, data: bytes | memoryview) -> None:
    """Give an input its binary-extension bytes without a copy (`set_data_from_numpy` would copy)."""
    infer_input._raw_data = data


def grpc_stub(client: InferenceGRPCClient) -> Any:
    """The generated v2 service stub of KServe's gRPC client."""
    return client._client_stub


def http_client(client: InferenceRESTClient) -> httpx.AsyncClient:
    """The httpx client (its connection pool) under KServe's REST client."""
    return client._client


def add_kserve_routes(app: FastAPI, dataplane: DataPlane, extension: ModelRepositoryExtension,
                      access_log_format: str | None = None) -> None:
    """KServe's REST routes (v1, v2, health, model repository) and exception handlers on `app`; KServe's
    middlewares (timing, access log) only where an access-log format asks for them.

    KServe's timing middleware matches every request's route a second time to name a metric, reads the CPU
    clock and formats two `kserve.trace` lines per request that duet's log config drops (they duplicate the
    access log and the `duet_*` histograms): CPU on every request for nothing.
    """
    kserve_server = RESTServer(FASTAPI_APP_IMPORT_STRING, dataplane, extension, http_port=0,
                               access_log_format=access_log_format)
    if access_log_format:
        kserve_server._add_middlewares(app)
    kserve_server._register_endpoints(app)
    kserve_server._add_exception_handlers(app)


class BoundRESTServer(RESTServer):
    """KServe's REST server on `bind_address`, serving the app `build_app` returns (built in the process that
    serves it: each worker process builds its own), or KServe's own app without its timing middleware."""

    def __init__(self, *args: Any, bind_address: str, build_app: AppFactory | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = bind_address
        self.build_app = build_app

    def create_application(self) -> None:
        if self.build_app is not None:
            self.config.app = self.build_app(self.dataplane, self.model_repository_extension,
                                             self.access_log_format)
            return
        super().create_application()

    def _add_middlewares(self, app: FastAPI) -> None:
        if self.access_log_format:
            super()._add_middlewares(app)


def multiprocess_rest_server(rest_server: BoundRESTServer, *args: Any,
                             **kwargs: Any) -> RESTServerMultiProcess:
    """KServe's multi-process REST server whose workers run `rest_server` (they unpickle it, then call its
    `run`)."""
    multiprocess = RESTServerMultiProcess(*args, **kwargs)
    multiprocess._rest_server = rest_server
    return multiprocess


class BoundGRPCServer(GRPCServer):
    """KServe's gRPC server on `address` instead of every interface, with the given interceptors and servicer
    class (KServe's InferenceServicer or a subclass)."""

    def __init__(self, address: str, interceptors: tuple[aio.ServerInterceptor, ...], *args: Any,
                 servicer: type[InferenceServicer] = InferenceServicer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = address
        self._interceptors = interceptors
        self._servicer = servicer

    async def start(self, max_workers: int) -> None:
        """A copy of `GRPCServer.start` (COPIED_FROM), with the address, interceptors and servicer as
        parameters."""
        servicer = self._servicer(self._data_plane, self._model_repository_extension)
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


class BoundModelServer(ModelServer):
    """KServe's ModelServer whose REST and gRPC listeners bind `bind_address` (default: every interface),
    whose REST server serves `build_app`'s app (default: KServe's), and whose gRPC server runs
    `grpc_interceptors` and `grpc_servicer` (default: KServe's)."""

    def __init__(self, *, bind_address: str = "0.0.0.0", build_app: AppFactory | None = None,
                 grpc_interceptors: tuple[aio.ServerInterceptor, ...] | None = None,
                 grpc_servicer: type[InferenceServicer] = InferenceServicer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_address = bind_address
        self.build_app = build_app
        self.grpc_interceptors = grpc_interceptors or (LoggingInterceptor(), ExceptionToStatusInterceptor())
        self.grpc_servicer = grpc_servicer

    def rest_server(self) -> BoundRESTServer:
        """The REST server `start` runs (in this process, or in each worker process)."""
        return BoundRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            bind_address=self.bind_address, build_app=self.build_app,
            access_log_format=self.access_log_format, workers=self.workers, grace_period=self.grace_period,
            event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
            ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile,
        )

    def start(self, models: list) -> None:
        """A copy of `ModelServer.start` (COPIED_FROM) with duet's REST and gRPC servers."""
        self._register_and_check_atleast_one_model_is_ready(models)
        rest_server = self.rest_server()
        if self.workers > 1:
            self._rest_multiprocess_server = multiprocess_rest_server(
                rest_server, FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                self.http_port, access_log_format=self.access_log_format, workers=self.workers,
                grace_period=self.grace_period, log_config_file=kserve_args.log_config_file,
                event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
                ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile,
            )
            self.servers.append(self._rest_multiprocess_server.start())
        else:
            self._rest_server = rest_server
            self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = BoundGRPCServer(
                self.bind_address, self.grpc_interceptors, self.grpc_port, self.dataplane,
                self.model_repository_extension, kwargs=vars(kserve_args), grace_period=self.grace_period,
                servicer=self.grpc_servicer,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())
