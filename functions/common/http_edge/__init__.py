"""The HTTP edge of upload and query: the route table, the OpenAPI document, input models, guards, error mapping
and request metrics."""
