"""Registering our servicers, with requests parsed leniently: a body that is
not the expected protobuf becomes a ``Malformed`` request, which the error
mapping answers INVALID_ARGUMENT (grpc.aio's own deserializer would answer
UNKNOWN)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError, Message

from budgetd_client.v1 import budget_pb2 as pb

if TYPE_CHECKING:
    from .interceptors import Outcomes

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["Budget"].full_name,
    pb.DESCRIPTOR.services_by_name["Admin"].full_name,
)
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["Admin"].full_name


class Malformed:
    """A request body that did not parse."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _lenient_parser(request_type: type[Message]):
    parse = request_type.FromString

    def parse_or_flag(body: bytes) -> Message | Malformed:
        try:
            return parse(body)
        except DecodeError as err:
            return Malformed(f"malformed {request_type.__name__}: {err}")

    return parse_or_flag


def add_service(server: grpc.aio.Server, name: str, servicer: object, outcomes: Outcomes) -> None:
    """Register a servicer like the generated ``add_*_to_server``, with the
    lenient parser above and every handler wrapped by ``outcomes``
    (authorization, error mapping, metrics; see ``Outcomes.wrap_handler``)."""
    service = pb.DESCRIPTOR.services_by_name[name]
    handlers = {}
    for method in service.methods:
        parse = _lenient_parser(getattr(pb, method.input_type.name))
        serialize = getattr(pb, method.output_type.name).SerializeToString
        implementation = getattr(servicer, method.name)
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handler = make(implementation, request_deserializer=parse, response_serializer=serialize)
        handlers[method.name] = outcomes.wrap_handler(f"/{service.full_name}/{method.name}", handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
