"""The hub's gRPC servicers (settlement.v1), registered by :func:`add_services`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from settlement.hub import Hub
from settlement.services import audit, ledger_service, loan, offtake, participant, payment
from settlement.v1 import (
    audit_pb2_grpc,
    ledger_pb2_grpc,
    loan_pb2_grpc,
    offtake_pb2_grpc,
    participant_pb2_grpc,
    payment_pb2_grpc,
)


def add_services(server: grpc.aio.Server, hub: Hub) -> list[str]:
    """Register every servicer on ``server``; returns their full service names."""
    payments = payment.PaymentService(hub)
    services: list[tuple[str, Any, Callable[[Any, grpc.aio.Server], None]]] = [
        (
            participant.SERVICE_NAME,
            participant.ParticipantService(hub),
            participant_pb2_grpc.add_ParticipantServiceServicer_to_server,
        ),
        (
            ledger_service.SERVICE_NAME,
            ledger_service.LedgerService(hub),
            ledger_pb2_grpc.add_LedgerServiceServicer_to_server,
        ),
        (
            audit.SERVICE_NAME,
            audit.AuditService(hub),
            audit_pb2_grpc.add_AuditServiceServicer_to_server,
        ),
        (
            payment.SERVICE_NAME,
            payments,
            payment_pb2_grpc.add_PaymentServiceServicer_to_server,
        ),
        (
            # Invoices are paid through the payment flow of the PaymentService.
            offtake.SERVICE_NAME,
            offtake.OfftakeService(hub, payments.flows),
            offtake_pb2_grpc.add_OfftakeServiceServicer_to_server,
        ),
        (
            # Disbursements and repayments are payments of the payment flow.
            loan.SERVICE_NAME,
            loan.LoanService(hub, payments.flows),
            loan_pb2_grpc.add_LoanServiceServicer_to_server,
        ),
    ]
    for _, servicer, add_to_server in services:
        add_to_server(servicer, server)
    return [name for name, _, _ in services]


__all__ = ["add_services"]
