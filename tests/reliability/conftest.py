"""Reliability tests reuse the gRPC fixtures (the development PKI)."""

from tests.grpc.conftest import dev_pki

__all__ = ["dev_pki"]
