package sluice_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sluicegw/sluice"
)

// otlpReceiver is an in-process OTLP/HTTP trace receiver: it decodes the
// protobuf export requests and keeps the spans.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	svc   []string // service.name of each batch
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rc := &otlpReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "unexpected export", http.StatusBadRequest)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		var req collectorpb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					rc.svc = append(rc.svc, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				rc.spans = append(rc.spans, ss.Spans...)
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// wait returns the spans once there are at least n (the exporter sends
// them in batches, every few milliseconds here).
func (rc *otlpReceiver) wait(t *testing.T, n int) []*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		got := append([]*tracepb.Span(nil), rc.spans...)
		rc.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver got %d spans, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTracingSpansAndPropagation(t *testing.T) {
	rc := newOTLPReceiver(t)
	var mu sync.Mutex
	var seen []http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	g := newGateway(t)
	apply(t, g, `
kind: Tracing
name: tracing
serviceName: edge-test
propagators: [tracecontext, b3multi]
exporter:
  otlp:
    endpoint: `+rc.URL+`/v1/traces
    batchTimeout: 5ms
---
kind: HTTPServer
name: edge
port: 0
address: 127.0.0.1
rules:
  - paths:
    - pathPrefix: /
      backend: api
---
kind: Pipeline
name: api
filters:
  - name: proxy
    kind: Proxy
    pools:
    - servers:
      - url: `+backend.URL+"\n")
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	url := "http://" + serverAddr(t, g, "edge")

	// The client is part of a trace already.
	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	mustGet(t, url+"/x", "traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")

	spans := rc.wait(t, 3)
	byName := map[string]*tracepb.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	host := strings.TrimPrefix(backend.URL, "http://")
	pl, step, up := byName["pipeline api"], byName["filter proxy"], byName["upstream "+host]
	if pl == nil || step == nil || up == nil {
		t.Fatalf("spans: %v", names(spans))
	}
	id := func(b []byte) string { return hex.EncodeToString(b) }
	for _, s := range []*tracepb.Span{pl, step, up} {
		if id(s.TraceId) != clientTrace {
			t.Errorf("span %q in trace %s, want the client's %s", s.Name, id(s.TraceId), clientTrace)
		}
	}
	if id(pl.ParentSpanId) != clientSpan || pl.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("pipeline span: parent %s kind %v", id(pl.ParentSpanId), pl.Kind)
	}
	if id(step.ParentSpanId) != id(pl.SpanId) {
		t.Errorf("filter span's parent %s, want the pipeline span %s", id(step.ParentSpanId), id(pl.SpanId))
	}
	if id(up.ParentSpanId) != id(step.SpanId) || up.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("upstream span: parent %s (want %s) kind %v", id(up.ParentSpanId), id(step.SpanId), up.Kind)
	}
	rc.mu.Lock()
	if len(rc.svc) == 0 || rc.svc[0] != "edge-test" {
		t.Errorf("service names %v", rc.svc)
	}
	rc.mu.Unlock()

	// The backend got the upstream span's context in both formats.
	mu.Lock()
	h := seen[0]
	mu.Unlock()
	if want := "00-" + clientTrace + "-" + id(up.SpanId) + "-01"; h.Get("Traceparent") != want {
		t.Errorf("backend traceparent %q, want %q", h.Get("Traceparent"), want)
	}
	if h.Get("X-B3-Traceid") != clientTrace || h.Get("X-B3-Spanid") != id(up.SpanId) || h.Get("X-B3-Sampled") != "1" {
		t.Errorf("backend B3 headers: %v", h)
	}

	// A B3 client is followed too.
	const b3Trace, b3Span = "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312"
	mustGet(t, url+"/b3", "X-B3-TraceId", b3Trace, "X-B3-SpanId", b3Span, "X-B3-Sampled", "1")
	spans = rc.wait(t, 6)
	found := false
	for _, s := range spans {
		if s.Name == "pipeline api" && id(s.TraceId) == b3Trace && id(s.ParentSpanId) == b3Span {
			found = true
		}
	}
	if !found {
		t.Error("no pipeline span continuing the B3 trace")
	}

	// Without the Tracing object nothing is traced or propagated.
	if err := g.Delete(context.Background(), "", "tracing"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, url+"/quiet")
	mu.Lock()
	last := seen[len(seen)-1]
	mu.Unlock()
	if last.Get("Traceparent") != "" || last.Get("X-B3-Traceid") != "" {
		t.Errorf("propagated without tracing: %v", last)
	}
}

func names(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func TestTracingSpecErrors(t *testing.T) {
	g := newGateway(t)
	for _, c := range []struct{ spec, field string }{
		{"sampler: {type: sometimes}", "sampler.type"},
		{"sampler: {type: ratio, ratio: 2}", "sampler.ratio"},
		{"propagators: [jaeger]", "propagators[0]"},
		{"exporter: {otlp: {endpoint: 'ftp://x'}}", "exporter.otlp.endpoint"},
		{"exporter: {otlp: {endpoint: 'http://x', compression: zstd}}", "exporter.otlp.compression"},
		{"nope: 1", "nope"},
	} {
		err := g.ApplyYAML(context.Background(), strings.NewReader("kind: Tracing\nname: t\n"+c.spec+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error naming %s", c.spec, err, c.field)
		}
	}
	apply(t, g, "kind: Tracing\nname: t1\n")
	err := g.ApplyYAML(context.Background(), strings.NewReader("kind: Tracing\nname: t2\n"))
	if err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("second Tracing object: %v", err)
	}
	_ = sluice.KindTracing
}
