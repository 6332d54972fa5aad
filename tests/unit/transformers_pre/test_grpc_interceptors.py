"""duet's gRPC interceptors on a real gRPC server (KServe's servicer over duet's DataPlane, on 127.0.0.1)
called by KServe's own gRPC client: the same errors, retry hints and token rule as REST."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from kserve import InferenceGRPCClient, InferInput, InferRequest, InferResponse, Model
from kserve.model_repository import ModelRepository
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from transformers_pre.dataplane import BinarySafeDataPlane
from transformers_pre.errors import BadRequest, Overloaded, PredictorUnavailable
from transformers_pre.grpc_interceptors import duet_grpc_interceptors

TOKEN = "s3cret"


class RefusingModel(Model):
    """Refuses the way its input's name says, or answers with that name."""

    def __init__(self) -> None:
        super().__init__("m")
        self.ready = True

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        name = payload.inputs[0].name
        refusals = {"overload": Overloaded("too busy"), "down": PredictorUnavailable("predictor down"),
                    "bad": BadRequest("bad tensor", image_index=1)}
        if name in refusals:
            raise refusals[name]
        return InferResponse(model_name="m", infer_outputs=[], response_id="r")


async def _server(bearer_token: str | None) -> tuple[aio.Server, int]:
    models = ModelRepository()
    models.update(RefusingModel())
    server = aio.server(interceptors=duet_grpc_interceptors(retry_after_seconds=7, bearer_token=bearer_token))
    servicer = InferenceServicer(BinarySafeDataPlane(model_registry=models), ModelRepositoryExtension(models))
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def open_server() -> AsyncIterator[int]:
    server, port = await _server(bearer_token=None)
    yield port
    await server.stop(grace=None)


@pytest.fixture
async def guarded_server() -> AsyncIterator[int]:
    server, port = await _server(bearer_token=TOKEN)
    yield port
    await server.stop(grace=None)


def _request(name: str) -> InferRequest:
    tensor = InferInput(name=name, shape=[1], datatype="BYTES", data=["x"])
    return InferRequest(model_name="m", infer_inputs=[tensor])


async def _refusal(port: int, name: str, metadata: tuple = ()) -> aio.AioRpcError:
    client = InferenceGRPCClient(f"127.0.0.1:{port}", retries=0)
    try:
        with pytest.raises(aio.AioRpcError) as refused:
            await client.infer(_request(name), headers=metadata)
        return refused.value
    finally:
        await client.close()


@pytest.mark.parametrize(("name", "code"), [("overload", grpc.StatusCode.RESOURCE_EXHAUSTED),
                                            ("down", grpc.StatusCode.UNAVAILABLE)])
async def test_a_refusal_to_retry_carries_retry_after(open_server: int, name: str,
                                                      code: grpc.StatusCode) -> None:
    refusal = await _refusal(open_server, name)
    assert refusal.code() == code
    assert dict(refusal.trailing_metadata() or ())["retry-after"] == "7"


async def test_other_refusals_carry_no_retry_after_and_keep_their_message(open_server: int) -> None:
    refusal = await _refusal(open_server, "bad")
    assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.details() == "image 1: bad tensor"
    assert "retry-after" not in dict(refusal.trailing_metadata() or ())


async def test_the_token_is_required_when_set_except_for_health_probes(guarded_server: int) -> None:
    refusal = await _refusal(guarded_server, "ok")
    assert refusal.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" in refusal.details()
    wrong = await _refusal(guarded_server, "ok", (("authorization", "Bearer nope"),))
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    client = InferenceGRPCClient(f"127.0.0.1:{guarded_server}", retries=0)
    try:
        assert await client.is_server_live()
        assert await client.is_model_ready("m")
        answer = await client.infer(_request("ok"), headers=(("authorization", f"Bearer {TOKEN}"),))
        assert answer.model_name == "m"
    finally:
        await client.close()


async def test_the_model_repository_methods_are_refused_and_the_model_stays_served(open_server: int) -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    async with aio.insecure_channel(f"127.0.0.1:{open_server}") as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="m"))
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "model repository extension" in refused.value.details()
        ready = await stub.ModelReady(pb.ModelReadyRequest(name="m"))
        assert ready.ready
