"""The app factory and the model server: duet's REST app (KServe's routes plus duet's error path, middleware
and `/metrics`) and KServe's ModelServer wired to serve it, with duet's gRPC interceptors.

Nothing here changes KServe's global app: each REST process (or worker process) builds its own with
`create_app`.
"""

from __future__ import annotations

import functools
import os
from importlib import metadata

from fastapi import FastAPI, Request, Response
from fastapi.responses import ORJSONResponse
from kserve.model_server import args as kserve_args
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from prometheus_client import REGISTRY, CollectorRegistry, exposition, multiprocess

from .dataplane import BinarySafeDataPlane
from .errors import NotFound
from .grpc_interceptors import duet_grpc_interceptors
from .grpc_servicer import VersionedInferenceServicer
from .kserve_compat import (
    MODEL_REPOSITORY_PATH_PREFIX,
    NO_MODEL_REPOSITORY,
    BoundModelServer,
    add_kserve_routes,
)
from .middleware import RequestContextMiddleware
from .rest_errors import EXCEPTION_HANDLERS
from .routes import add_versioned_routes
from .settings import Settings


async def metrics_handler(request: Request) -> Response:
    """Prometheus exposition; with several workers, the sum over all of them (PROMETHEUS_MULTIPROC_DIR)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
    return Response(content=encoder(registry), headers={"content-type": content_type})


async def refuse_model_repository(rest: str) -> None:
    raise NotFound(NO_MODEL_REPOSITORY)


def create_app(settings: Settings, dataplane: BinarySafeDataPlane, extension: ModelRepositoryExtension,
               access_log_format: str | None = None) -> FastAPI:
    """duet's REST app over `dataplane`: KServe's routes and exception handlers, duet's error path (wins over
    KServe's catch-alls: Starlette picks the handler of the most specific exception class), duet's middleware,
    and, where the first matching route wins over KServe's, a `/metrics` that sums the worker processes and
    the metadata and versioned routes (`routes.py`)."""
    app = FastAPI(
        title="KServe ModelServer",
        version=metadata.version("kserve"),
        docs_url="/docs" if kserve_args.enable_docs_url else None,
        redoc_url=None,
        default_response_class=ORJSONResponse,
    )
    app.add_api_route("/metrics", metrics_handler, methods=["GET"])
    # Before KServe's routes, so the first match: its repository extension would let any client unload a model.
    app.add_api_route(f"{MODEL_REPOSITORY_PATH_PREFIX}/{{rest:path}}", refuse_model_repository,
                      methods=["GET", "POST"], include_in_schema=False)
    add_versioned_routes(app, dataplane, V2Endpoints(dataplane, extension))
    app.add_middleware(RequestContextMiddleware, settings=settings)
    add_kserve_routes(app, dataplane, extension, access_log_format)
    # After KServe's: duet's handler replaces KServe's for a class both handle (ModelNotFound).
    for error_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(error_class, handler)
    return app


def make_model_server(settings: Settings, **kwargs: object) -> BoundModelServer:
    """A KServe ModelServer serving duet's app (`create_app`) over the binary-safe DataPlane, listening on
    `bind_address` (keyword; every interface by default, as in a container), with Retry-After and the
    bearer-token check and the served version on gRPC too."""
    server = BoundModelServer(
        build_app=functools.partial(create_app, settings),
        grpc_interceptors=duet_grpc_interceptors(settings.retry_after_seconds, settings.bearer_token),
        grpc_servicer=VersionedInferenceServicer,
        **kwargs,
    )
    server.dataplane = BinarySafeDataPlane(model_registry=server.registered_models)
    return server
