package sluice_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicegw/sluice"
)

// BenchmarkGatewayProxyStats is BenchmarkGatewayProxy's gateway case with
// statistics on (the default: server, route, top paths, pipeline, filter
// and backend recorders) and off (WithoutStats), to show their cost.
func BenchmarkGatewayProxyStats(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer backend.Close()
	for _, bc := range []struct {
		name string
		opts []sluice.Option
	}{
		{"stats-on", nil},
		{"stats-off", []sluice.Option{sluice.WithoutStats()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchGateway(b, "  - name: proxy\n    kind: Proxy\n    pools:\n    - servers:\n      - url: "+backend.URL+"\n", bc.opts...)
			serveParallel(b, h)
		})
	}
}

// BenchmarkGatewayStatsOverhead isolates the statistics' cost: a request
// through an HTTPServer's router and a pipeline whose Mock filter answers
// it, in memory (no backend, no network), with stats on and off. The
// difference is the cost of recording the server, route, top path,
// pipeline and filter figures.
func BenchmarkGatewayStatsOverhead(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []sluice.Option
	}{
		{"stats-on", nil},
		{"stats-off", []sluice.Option{sluice.WithoutStats()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchGateway(b, "  - name: mock\n    kind: Mock\n    rules:\n      - code: 200\n        body: hello\n", bc.opts...)
			w := &sink{h: http.Header{}}
			r := httptest.NewRequest("GET", "/bench", nil)
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		})
	}
}
