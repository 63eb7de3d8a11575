"""The settlement service: gRPC servicers, flows, auth, compliance, ISO 20022."""
