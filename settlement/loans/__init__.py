"""Loan disbursement: the pure domain of an export-credit facility.

Facility terms (:mod:`.terms`), its states (:mod:`.states`), day counts
(:mod:`.daycount`), daily accrual and the one rounding rule (:mod:`.accrual`),
the repayment schedule (:mod:`.schedule`), the repayment waterfall
(:mod:`.waterfall`) and the checks of a disbursement request
(:mod:`.disbursement`). Nothing here touches gRPC or a database: the service
builds these values from the ledger and posts what they compute.
"""
