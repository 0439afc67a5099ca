"""The settings of tracing: OpenTelemetry's standard ``OTEL_*`` variables, and Oxify's own.

A mixin of :class:`app.settings.Settings`. The variables that decide whether and where spans go
are read here, under the names every OpenTelemetry SDK uses; the exporter and the batch
processor read their finer knobs themselves (``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_EXPORTER_OTLP_TIMEOUT``, ``OTEL_EXPORTER_OTLP_COMPRESSION``, ``OTEL_BSP_*``,
``OTEL_RESOURCE_ATTRIBUTES``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator

Sampler = Literal[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
]
TRACES_PATH = "/v1/traces"  # what OTLP/HTTP appends to OTEL_EXPORTER_OTLP_ENDPOINT


class TracingSettings(BaseModel):
    """Fields mixed into Settings; tracing is off unless an OTLP endpoint is set."""

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_exporter_otlp_endpoint"),
        description="OTLP/HTTP collector root (spans go to <root>/v1/traces); unset (and no "
        "traces endpoint): tracing is off (OTEL_EXPORTER_OTLP_ENDPOINT).",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel_exporter_otlp_traces_endpoint"
        ),
        description="The full URL spans are posted to; wins over the root above "
        "(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).",
    )
    otel_service_name: str = Field(
        default="oxify",
        min_length=1,
        validation_alias=AliasChoices("OTEL_SERVICE_NAME", "otel_service_name"),
        description="service.name of every span (OTEL_SERVICE_NAME).",
    )
    otel_traces_sampler: Sampler = Field(
        default="parentbased_always_on",
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER", "otel_traces_sampler"),
        description="Which traces are recorded (OTEL_TRACES_SAMPLER); a run's trace is "
        "sampled or not as a whole, decided when the run is submitted.",
    )
    otel_traces_sampler_arg: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        validation_alias=AliasChoices("OTEL_TRACES_SAMPLER_ARG", "otel_traces_sampler_arg"),
        description="The ratio of the traceidratio samplers (OTEL_TRACES_SAMPLER_ARG).",
    )
    trace_url_template: str | None = Field(
        default=None,
        description="A trace viewer's URL with {trace_id} in it (http://jaeger:16686/trace/"
        "{trace_id}): GET /v1/executions/{id} then links to the run's trace (trace_url).",
    )

    @field_validator("trace_url_template")
    @classmethod
    def _has_trace_id(cls, template: str | None) -> str | None:
        if template is not None and "{trace_id}" not in template:
            raise ValueError("OXIFY_TRACE_URL_TEMPLATE must contain {trace_id}")
        return template

    @property
    def traces_endpoint(self) -> str | None:
        """Where spans are posted; None: tracing is off."""
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        if self.otel_exporter_otlp_endpoint:
            return self.otel_exporter_otlp_endpoint.rstrip("/") + TRACES_PATH
        return None
