"""OpenTelemetry set-up: one tracer provider per process, exporting where settings say."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from rased.common.settings import ServiceSettings

_configured = False


def configure_tracing(settings: ServiceSettings) -> None:
    """Install the global tracer provider once; later calls keep the first one."""
    global _configured  # noqa: PLW0603 - OpenTelemetry's provider is process-global by design
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    exporter: SpanExporter | None = None
    if settings.otel_exporter == "console":
        exporter = ConsoleSpanExporter()
    elif settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otel_endpoint, insecure=True)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def shutdown_tracing() -> None:
    """Flush and stop the span exporter."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
