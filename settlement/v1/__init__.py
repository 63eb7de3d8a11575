"""Generated gRPC API of the settlement hub (package settlement.v1).

Do not edit: change proto/settlement/v1/*.proto and run `make proto`.
"""
