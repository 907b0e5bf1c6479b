"""Lists a node's gRPC services through gRPC reflection (grpc.reflection.v1alpha), with
Python's grpcio-reflection client, as an application developer's tool would, and resolves
one service's methods from the descriptors the node serves.

Usage: reflection.py HOST:PORT CA_PEM CERT_PEM KEY_PEM SERVICE
Prints {"services": [...], "methods": [...]} as JSON.
"""

import json
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target, ca, cert, key, service = sys.argv[1:6]
    with open(ca, "rb") as f:
        root = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        private = f.read()
    credentials = grpc.ssl_channel_credentials(root, private, chain)
    with grpc.secure_channel(target, credentials) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = list(database.get_services())
        methods = [m.name for m in DescriptorPool(database).FindServiceByName(service).methods]
    print(json.dumps({"services": services, "methods": methods}))


if __name__ == "__main__":
    main()
