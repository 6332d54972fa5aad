"""Container entry point: `python -m transformers_pre --model mammography --predictor_host HOST:PORT ...`.

Takes KServe's own ModelServer flags (`--http_port`, `--grpc_port`, `--predictor_host`,
`--predictor_protocol`, `--workers`, ...) plus `--model`, repeatable, to serve several public models from one
process (the local stack serves both).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path


def _fresh_multiprocess_dir() -> None:
    # Must run before prometheus_client is imported (kserve imports it): stale files from a previous run
    # would otherwise be summed into this run's counters.
    # On a cluster the folder is an emptyDir mount point: empty it, never remove it.
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for entry in Path(folder).iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


_fresh_multiprocess_dir()

from kserve import logging as kserve_logging
from kserve import model_server

from . import registry
from .artifacts.startup import verify_mounted_repository
from .building import ModelBeingBuilt
from .logs import log_config
from .predictor_client import PredictorClient
from .server import make_model_server
from .settings import Settings


def build_models(names: list[str], settings: Settings, predictor: PredictorClient) -> list:
    """Instantiate and load the named public models (each class is imported only when served: it pulls its own
    stack)."""
    models = [registry.load(registry.model(name).transformer)(settings, predictor) for name in names]
    for model in models:
        model.load()
    return models


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], conflict_handler="resolve")
    parser.add_argument("--model", action="append", choices=registry.NAMES, required=True,
                        help="Public model to serve; repeat to serve several.")
    parser.add_argument("--building", action="append", choices=registry.NAMES, default=[],
                        help="Public model whose build is still running: answered with 503 until the stack restarts "
                        "this process with it built (the local stack's first run).")
    parser.add_argument("--bind_address", default="0.0.0.0",
                        help="Address of the REST and gRPC listeners: every interface in a container; the local "
                        "stack passes 127.0.0.1.")
    args, _ = parser.parse_known_args()
    settings = Settings()
    model_server.args.log_config_file = log_config(settings.log_format)
    kserve_logging.configure_logging(model_server.args.log_config_file)
    verify_mounted_repository()
    protocol = "grpc-v2" if args.predictor_protocol == "grpc-v2" else "v2"
    predictor = PredictorClient(args.predictor_host, protocol, settings.predictor)
    models = build_models(list(dict.fromkeys(args.model)), settings, predictor)
    being_built = [ModelBeingBuilt(name) for name in dict.fromkeys(args.building) if name not in args.model]
    logging.getLogger("duet").info("serving %s with predictor %s (%s); still building: %s", [m.name for m in models],
                                   args.predictor_host, protocol, [m.name for m in being_built])
    server = make_model_server(settings, http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
                               bind_address=args.bind_address)
    # KServe's start registers only the models that are ready; one being built must be known to answer its 503.
    for placeholder in being_built:
        server.register_model(placeholder)
    server.start(models)


if __name__ == "__main__":
    main()
