"""Each use of KServe's internals in `kserve_compat.py`, pinned: a KServe upgrade that changes one fails here,
naming it, rather than in a request."""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import pickle

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, ModelServer, RESTConfig
from kserve.model_repository import ModelRepository
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from transformers_pre import kserve_compat
from transformers_pre.dataplane import BinarySafeDataPlane
from transformers_pre.middleware import RequestContextMiddleware
from transformers_pre.server import create_app
from transformers_pre.settings import Settings


def _resolve(dotted: str) -> object:
    module_name, class_name, method = dotted.rsplit(".", 2)
    return getattr(getattr(importlib.import_module(module_name), class_name), method)


@pytest.mark.parametrize("dotted", sorted(kserve_compat.COPIED_FROM))
def test_the_kserve_methods_copied_or_replaced_are_unchanged(dotted: str) -> None:
    source = inspect.getsource(_resolve(dotted))
    assert hashlib.sha256(source.encode()).hexdigest() == kserve_compat.COPIED_FROM[dotted], (
        f"KServe changed {dotted}: bring its copy in transformers_pre/kserve_compat.py up to date (or drop "
        "the copy if KServe now has the hook), then record the new hash in COPIED_FROM")


def test_raw_input_bytes_are_kserves_raw_data_and_read_in_place() -> None:
    infer_input = InferInput(name="x", shape=[2], datatype="INT32")
    assert kserve_compat.raw_input_bytes(infer_input) is None, (
        "KServe's InferInput no longer starts without raw data")
    data = memoryview(np.array([7, 9], dtype=np.int32).tobytes())
    kserve_compat.set_raw_input_bytes(infer_input, data)
    assert kserve_compat.raw_input_bytes(infer_input) is data
    assert infer_input.as_numpy().tolist() == [7, 9], "KServe's InferInput no longer decodes its `_raw_data`"


async def test_the_grpc_client_has_the_v2_stub() -> None:
    client = InferenceGRPCClient("127.0.0.1:1")
    try:
        stub = kserve_compat.grpc_stub(client)
        assert callable(stub.ModelMetadata) and callable(stub.ModelInfer), (
            "InferenceGRPCClient._client_stub changed")
    finally:
        await client.close()


async def test_the_rest_client_has_an_httpx_client() -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        assert isinstance(kserve_compat.http_client(client), httpx.AsyncClient), (
            "InferenceRESTClient._client changed")
    finally:
        await client.close()


def _registry() -> tuple[BinarySafeDataPlane, ModelRepositoryExtension]:
    models = ModelRepository()
    return BinarySafeDataPlane(model_registry=models), ModelRepositoryExtension(model_registry=models)


def _paths(app: FastAPI) -> set[str]:
    return set(app.openapi()["paths"])


def test_kserve_routes_and_handlers_land_on_the_given_app() -> None:
    app = FastAPI()
    kserve_compat.add_kserve_routes(app, *_registry())
    expected = {"/", "/v2/health/ready", "/v2/models/{model_name}/infer", "/v1/models/{model_name}:predict"}
    assert expected <= _paths(app), (
        "RESTServer._register_endpoints no longer adds KServe's routes to the app it is given")
    assert Exception in app.exception_handlers, (
        "RESTServer._add_exception_handlers no longer adds KServe's catch-all")
    assert not app.user_middleware, (
        "KServe's timing middleware is added although no access-log format asks for it")


def _rest_server(**kwargs: object) -> kserve_compat.BoundRESTServer:
    dataplane, extension = _registry()
    return kserve_compat.BoundRESTServer("kserve.model_server:app", dataplane, extension, 0,
                                         bind_address="127.0.0.1", **kwargs)


def test_the_rest_server_binds_the_given_address_and_serves_the_built_app() -> None:
    server = _rest_server(build_app=functools.partial(create_app, Settings()))
    assert server.config.host == "127.0.0.1"
    server.create_application()
    assert isinstance(server.config.app, FastAPI)
    assert any(layer.cls is RequestContextMiddleware for layer in server.config.app.user_middleware)


def test_each_rest_worker_process_builds_duets_app_from_the_pickled_server() -> None:
    # What KServe's multi-process server does: each spawned worker unpickles the REST server, then calls its
    # `run`, which creates the application in that process.
    server = _rest_server(build_app=functools.partial(create_app, Settings()), workers=2)
    multiprocess = kserve_compat.multiprocess_rest_server(
        server, "kserve.model_server:app", server.dataplane, server.model_repository_extension, 0, workers=2)
    assert multiprocess._rest_server is server, "RESTServerMultiProcess._rest_server changed"
    in_worker = pickle.loads(pickle.dumps(multiprocess._rest_server.run))
    in_worker.__self__.create_application()
    app = in_worker.__self__.config.app
    assert isinstance(app, FastAPI) and "/v2/models/{model_name}/infer" in _paths(app)
    assert any(layer.cls is RequestContextMiddleware for layer in app.user_middleware)


def test_the_grpc_and_model_servers_have_what_the_copies_use() -> None:
    dataplane, extension = _registry()
    grpc_server = GRPCServer(0, dataplane, extension, kwargs={})
    for name in ("_port", "_data_plane", "_model_repository_extension", "_kwargs", "_server"):
        assert hasattr(grpc_server, name), f"KServe's GRPCServer has no {name} any more"
    model_server = ModelServer(http_port=0, grpc_port=0)
    for name in ("_rest_server", "_rest_multiprocess_server", "_grpc_server", "servers", "dataplane",
                 "model_repository_extension", "grace_period", "max_threads"):
        assert hasattr(model_server, name), f"KServe's ModelServer has no {name} any more"
    for method in ("_register_and_check_atleast_one_model_is_ready", "_serve", "setup_event_loop",
                   "register_signal_handler"):
        assert callable(getattr(model_server, method, None)), f"KServe's ModelServer has no {method} any more"
