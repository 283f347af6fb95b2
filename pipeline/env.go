package pipeline

import (
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicegw/sluice/internal/clock"
)

// Clock tells the time and makes timers; tests pass a fake one (see
// filtertest) instead of sleeping.
type Clock = clock.Clock

// Timer is a Clock's one-shot timer.
type Timer = clock.Timer

// Env is what a filter's Build gets from the pipeline that builds it. Every
// field is a value handed in by the embedding program; none is global.
type Env struct {
	// Logger is the filter's logger, with "pipeline" and "filter" attributes.
	// Never nil when a pipeline builds the filter.
	Logger *slog.Logger
	// Clock is the time source; never nil when a pipeline builds the filter.
	Clock Clock
	// Transport, when set, is the round tripper filters use for upstream
	// calls instead of building their own (tests, custom dialers).
	Transport http.RoundTripper
	// TracerProvider, when set, traces every request: a span for the
	// pipeline, with a child span for each filter step. Nil traces nothing
	// and costs nothing.
	TracerProvider trace.TracerProvider
	// Propagator carries the trace context across HTTP: the pipeline
	// extracts the client's (the parent of its span) and filters that call
	// upstreams inject theirs. Nil means W3C Trace Context and Baggage.
	// Used only with a TracerProvider.
	Propagator propagation.TextMapPropagator
	// MeterProvider, when set, records each pipeline's request count,
	// server-error count and duration. Nil records nothing.
	MeterProvider metric.MeterProvider
	// Stats, when true, makes the pipeline keep statistics (Pipeline.Stats:
	// the pipeline's and each filter step's) and tells filters that keep
	// their own, like the Proxy's per-server figures, to do so. Recording
	// takes no lock and does not allocate.
	Stats bool
	// Policies are the pipeline's resilience policies, built before its
	// filters; find one with Lookup.
	Policies Policies
	// Registries finds the service registry called name (see
	// ServiceRegistry), for the Proxy's pools with serviceRegistry. A
	// gateway answers every name with a handle that follows whichever
	// object of that name is live, now or later, and reports
	// ErrNoRegistry while there is none; false means the environment has
	// no such registry at all. Nil means no registries.
	Registries func(name string) (ServiceRegistry, bool)
	// Pipeline is the name of the pipeline being built.
	Pipeline string
	// Name is the filter's own name.
	Name string
}

// withDefaults fills nil fields.
func (e Env) withDefaults() Env {
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	if e.Clock == nil {
		e.Clock = clock.Real()
	}
	return e
}
