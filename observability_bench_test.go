package sluice_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
			g, err := sluice.New(bc.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer g.Shutdown(context.Background())
			err = g.ApplyYAML(context.Background(), strings.NewReader(`
kind: HTTPServer
name: s
rules:
  - paths:
    - pathPrefix: /
      backend: p
---
kind: Pipeline
name: p
filters:
  - name: proxy
    kind: Proxy
    pools:
    - servers:
      - url: `+backend.URL+`
`))
			if err != nil {
				b.Fatal(err)
			}
			h, _ := g.Handler("s")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &sink{h: http.Header{}}
				r := httptest.NewRequest("GET", "/bench", nil)
				for pb.Next() {
					clear(w.h)
					h.ServeHTTP(w, r)
					if w.code != 200 {
						b.Errorf("status %d", w.code)
						return
					}
				}
			})
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
			g, err := sluice.New(bc.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer g.Shutdown(context.Background())
			err = g.ApplyYAML(context.Background(), strings.NewReader(`
kind: HTTPServer
name: s
rules:
  - paths:
    - pathPrefix: /
      backend: p
---
kind: Pipeline
name: p
filters:
  - name: mock
    kind: Mock
    rules:
      - code: 200
        body: hello
`))
			if err != nil {
				b.Fatal(err)
			}
			h, _ := g.Handler("s")
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
