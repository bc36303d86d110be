"""ExportProfilesServiceRequest with its bulky repeated messages left as bytes: a copy of the OTLP profiles
schema, in its own descriptor pool, where `Profile.samples` and the location, stack and function tables of
`ProfilesDictionary` are `repeated bytes`. Parsing a request with it costs what parsing the real
one does, but hands those messages over as raw bytes that fleetprof.wire.protoscan reads in bulk.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2

RAW_FIELDS = {
    "Profile": {"samples"},
    "ProfilesDictionary": {"location_table", "stack_table", "function_table"},
}
_REQUEST = "opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceRequest"


def _file_proto(name: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of `name` from the default pool."""
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
    return proto


def _add_with_dependencies(pool: descriptor_pool.DescriptorPool, name: str, done: set[str]) -> None:
    """Add file `name` (dependencies first) to `pool`, the RAW_FIELDS of the profiles file as bytes."""
    if name in done:
        return
    proto = _file_proto(name)
    for dependency in proto.dependency:
        _add_with_dependencies(pool, dependency, done)
    if name == profiles_pb2.DESCRIPTOR.name:
        for message in proto.message_type:
            for f in message.field:
                if f.name in RAW_FIELDS.get(message.name, ()):
                    f.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    f.ClearField("type_name")
    pool.Add(proto)
    done.add(name)


def _request_class() -> type[Message]:
    """The request message class of the copied schema."""
    pool = descriptor_pool.DescriptorPool()
    _add_with_dependencies(pool, profiles_service_pb2.DESCRIPTOR.name, set())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(_REQUEST))


RawRequest = _request_class()
