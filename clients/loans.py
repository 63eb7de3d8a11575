"""Loan commands of the bank client (LoanService, loan.proto): registered in the next step."""

from __future__ import annotations
