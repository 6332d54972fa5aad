"""The HTTP side beside STOW-RS: the status API, /metrics, /healthz and /readyz."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import audit, metrics
from .spool import STATES, uid_key


def _study_view(spool, study) -> dict:
    exports = spool.exports(study.id)
    return {
        "id": study.id,
        "study": uid_key(study.study_uid),
        "called_ae": study.called_ae,
        "state": study.state,
        "generation": study.generation,
        "instances": len(spool.instances(study.id)),
        "dispatch_attempts": study.dispatch_attempts,
        "last_error": study.last_error,
        "exports": [
            {
                "destination": e.destination,
                "kind": e.kind,
                "generation": e.generation,
                "state": e.state,
                "attempts": e.attempts,
                "last_error": e.last_error,
            }
            for e in exports
        ],
    }


async def list_studies(request: Request) -> JSONResponse:
    """GET /api/studies?state=pending,failed (default: every state but exported)."""
    spool = request.app.state.gateway.spool
    wanted = tuple(s for s in request.query_params.get("state", "").split(",") if s) or tuple(
        s for s in STATES if s != "exported"
    )
    unknown = sorted(set(wanted) - set(STATES))
    if unknown:
        return JSONResponse({"error": f"unknown state(s) {unknown}; one of {list(STATES)}"}, status_code=400)
    return JSONResponse({"studies": [_study_view(spool, study) for study in spool.studies(wanted)]})


async def retry_study(request: Request) -> JSONResponse:
    """POST /api/studies/{id}/retry: a failed study is dispatched again, a dead-lettered one exported
    again."""
    gateway = request.app.state.gateway
    try:
        study_id = int(request.path_params["study_id"])
    except ValueError:
        return JSONResponse({"error": "the study id must be an integer"}, status_code=400)
    study = gateway.spool.study(study_id)
    if study is None:
        return JSONResponse({"error": f"no study {study_id}"}, status_code=404)
    state = gateway.spool.retry(study_id)
    if state is None:
        return JSONResponse(
            {
                "error": f"study {study_id} is {study.state}; only failed or dead_letter studies "
                "can be retried"
            },
            status_code=409,
        )
    audit.event("study", "retry requested by an operator", study_id=study_id, state=state)
    gateway.wake.set()
    return JSONResponse(_study_view(gateway.spool, gateway.spool.study(study_id)))


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> JSONResponse:
    problems = request.app.state.gateway.problems()
    return JSONResponse(
        {"status": "ready" if not problems else "not ready", "problems": problems},
        status_code=200 if not problems else 503,
    )
