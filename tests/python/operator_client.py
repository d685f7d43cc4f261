#!/usr/bin/env python3
"""A client of the clustermgr operator API written only against the .proto contract and the
credential file format, using Python grpcio (not the project's own Rust client).

Requires: pip install grpcio grpcio-health-checking protobuf

Modes:
  --bundle FILE
      Mutual TLS with the operator credential in FILE (TOML: controller, name, ca_pem,
      cert_pem, key_pem). Calls grpc.health.v1.Health/Check, clustermgr.v1.Operator/WhoAmI
      and clustermgr.v1.Operator/ListNodes; prints one JSON object and exits 0 on success,
      1 if any call failed.
  --no-cert --ca FILE --controller HOST:PORT
      The same calls with TLS that verifies the server but offers no client certificate.
      Prints one JSON object with the gRPC status code of every call and exits 0 iff every
      call was refused (1 if any call succeeded: that would be a hole in the API).

Exit code 3 means the grpc modules are missing; 2 means bad usage or an unreadable file.
"""

import argparse
import json
import sys

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

try:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError as e:  # pragma: no cover - reported to the caller
    print(
        f"error: cannot import the Python gRPC modules ({e}); "
        "install them with: pip install grpcio grpcio-health-checking protobuf",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT = 10.0


# --- a minimal protobuf wire-format decoder (varint and length-delimited fields only) -----


def _varint(buf, i):
    shift = 0
    value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def decode_fields(buf):
    """Returns {field_number: [values]}; varints as int, length-delimited as bytes."""
    fields = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated length-delimited field")
            value = bytes(buf[i : i + n])
            i += n
        elif wire == 1:
            value = bytes(buf[i : i + 8])
            i += 8
        elif wire == 5:
            value = bytes(buf[i : i + 4])
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _string(fields, number):
    values = fields.get(number)
    return values[-1].decode("utf-8") if values else ""


def _identity(b):
    return b


# --- calls ---------------------------------------------------------------------------------


def call_all(channel):
    """Runs the three calls; returns a dict. Raises grpc.RpcError from the first failing call."""
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    result = {"health": health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)}

    # WhoAmIRequest {} encodes to zero bytes.
    whoami = channel.unary_unary(
        "/clustermgr.v1.Operator/WhoAmI",
        request_serializer=_identity,
        response_deserializer=_identity,
    )(b"", timeout=TIMEOUT)
    w = decode_fields(whoami)
    result["name"] = _string(w, 1)  # WhoAmIResponse.name = 1
    result["role"] = _string(w, 2)  # WhoAmIResponse.role = 2

    # ListNodesRequest {} encodes to zero bytes; ListNodesResponse.nodes = 1 (repeated Node).
    listing = channel.unary_unary(
        "/clustermgr.v1.Operator/ListNodes",
        request_serializer=_identity,
        response_deserializer=_identity,
    )(b"", timeout=TIMEOUT)
    nodes = []
    for raw in decode_fields(listing).get(1, []):
        n = decode_fields(raw)
        # Node: id = 1, hostname = 2, role = 3, status = 4
        nodes.append(
            {
                "id": _string(n, 1),
                "hostname": _string(n, 2),
                "role": _string(n, 3),
                "status": _string(n, 4),
            }
        )
    result["nodes"] = nodes
    return result


def channel_for(target, ca_pem, key_pem=None, cert_pem=None, server_name=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca_pem.encode(),
        private_key=key_pem.encode() if key_pem else None,
        certificate_chain=cert_pem.encode() if cert_pem else None,
    )
    options = []
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, creds, options=options)


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        print(f"error: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)


def main():
    p = argparse.ArgumentParser(description="Python gRPC client of the clustermgr operator API")
    p.add_argument("--bundle", help="operator credential TOML")
    p.add_argument("--no-cert", action="store_true", help="offer no client certificate")
    p.add_argument("--ca", help="cluster CA certificate (PEM), for --no-cert")
    p.add_argument("--controller", help="HOST:PORT (default: the one in the bundle)")
    p.add_argument(
        "--server-name",
        help="TLS name to verify instead of the host in the address (e.g. localhost)",
    )
    a = p.parse_args()

    if a.no_cert:
        if not a.ca or not a.controller:
            p.error("--no-cert needs --ca and --controller")
        ca_pem = _read(a.ca).decode()
        outcome = {"mode": "no-cert"}
        refused = True
        with channel_for(a.controller, ca_pem, server_name=a.server_name) as ch:
            try:
                got = call_all(ch)
                outcome.update(got)
                outcome["code"] = "OK"
                refused = False
            except grpc.RpcError as e:
                outcome["code"] = e.code().name
                outcome["details"] = e.details()
        # Every call must be refused on its own, not only the first one: try the operator
        # method directly as well.
        if refused:
            with channel_for(a.controller, ca_pem, server_name=a.server_name) as ch:
                try:
                    ch.unary_unary(
                        "/clustermgr.v1.Operator/ListNodes",
                        request_serializer=_identity,
                        response_deserializer=_identity,
                    )(b"", timeout=TIMEOUT)
                    outcome["list_nodes_code"] = "OK"
                    refused = False
                except grpc.RpcError as e:
                    outcome["list_nodes_code"] = e.code().name
                    outcome["list_nodes_details"] = e.details()
        outcome["refused"] = refused
        print(json.dumps(outcome))
        return 0 if refused else 1

    if not a.bundle:
        p.error("give --bundle FILE, or --no-cert --ca FILE --controller HOST:PORT")
    if tomllib is None:
        print("error: Python 3.11 or later is needed (tomllib)", file=sys.stderr)
        return 2
    try:
        bundle = tomllib.loads(_read(a.bundle).decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        print(f"error: {a.bundle} is not a credential file: {e}", file=sys.stderr)
        return 2
    missing = [k for k in ("controller", "ca_pem", "cert_pem", "key_pem") if k not in bundle]
    if missing:
        print(f"error: {a.bundle} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    target = a.controller or bundle["controller"]
    with channel_for(
        target,
        bundle["ca_pem"],
        key_pem=bundle["key_pem"],
        cert_pem=bundle["cert_pem"],
        server_name=a.server_name,
    ) as ch:
        try:
            result = call_all(ch)
        except grpc.RpcError as e:
            print(json.dumps({"mode": "bundle", "code": e.code().name, "details": e.details()}))
            return 1
    result["mode"] = "bundle"
    result["code"] = "OK"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
