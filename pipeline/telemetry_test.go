package pipeline_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluicegw/sluice/pipeline"
)

func TestTracingAndMetrics(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	raw, _ := pipeline.ParseRaw([]byte(`
flow:
  - {filter: one}
  - {filter: two, jumpIf: {a: END}}
filters:
  - {name: one, kind: Step}
  - {name: two, kind: Step, result: a, body: x}
`))
	var spec pipeline.Spec
	if err := raw.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	spec.Name = "traced"
	p, err := pipeline.New(spec, registry(t), pipeline.Env{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 3; i++ {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/t", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
	}

	ended := spans.Ended()
	if len(ended) != 9 {
		t.Fatalf("%d spans, want 3 requests × (pipeline + 2 filters)", len(ended))
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range ended[:3] {
		byName[s.Name()] = s
	}
	root, one, two := byName["pipeline traced"], byName["filter one"], byName["filter two"]
	if root == nil || one == nil || two == nil {
		t.Fatalf("span names: %v", byName)
	}
	if one.Parent().SpanID() != root.SpanContext().SpanID() || two.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Error("filter spans are not children of the pipeline span")
	}
	if !hasAttr(two.Attributes(), attribute.String("sluice.result", "a")) {
		t.Errorf("filter two's span lacks its result: %v", two.Attributes())
	}
	if !hasAttr(root.Attributes(), attribute.Int("http.response.status_code", 200)) {
		t.Errorf("pipeline span lacks the status: %v", root.Attributes())
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					got[m.Name] += dp.Value
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					got[m.Name] += int64(dp.Count)
				}
			}
		}
	}
	if got["sluice.pipeline.requests"] != 3 || got["sluice.pipeline.duration"] != 3 || got["sluice.pipeline.server_errors"] != 0 {
		t.Errorf("metrics %v", got)
	}
}

func hasAttr(attrs []attribute.KeyValue, want attribute.KeyValue) bool {
	for _, a := range attrs {
		if a == want {
			return true
		}
	}
	return false
}
