"""The gRPC adapter: servicers that decode a request, call a use case of
the application and encode its reply, and the interceptors every call of
ours goes through (error mapping and metrics, authorization)."""
