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

// BenchmarkGatewayProxy measures the whole data path of one request but the
// client's connection: the HTTPServer's router, the pipeline, the Proxy
// filter, a keep-alive connection to a real backend on loopback, and
// writing the response. "direct" is the same request from the same kind of
// tuned transport straight to the backend, as a baseline.
func BenchmarkGatewayProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer backend.Close()

	h := benchGateway(b, "  - name: proxy\n    kind: Proxy\n    pools:\n    - servers:\n      - url: "+backend.URL+"\n")
	b.Run("gateway", func(b *testing.B) { serveParallel(b, h) })
	b.Run("direct", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
		defer tr.CloseIdleConnections()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", backend.URL+"/bench", nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	})
}

// benchGateway applies an HTTPServer whose every path goes to a pipeline
// with the given filters (YAML list items), and returns the server's
// handler; the gateway shuts down with the benchmark.
func benchGateway(b *testing.B, filters string, opts ...sluice.Option) http.Handler {
	b.Helper()
	g, err := sluice.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Shutdown(context.Background()) })
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
`+filters))
	if err != nil {
		b.Fatal(err)
	}
	h, err := g.Handler("s")
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// serveParallel sends GET /bench to h from parallel goroutines, each with
// its own response sink; any status but 200 fails the benchmark.
func serveParallel(b *testing.B, h http.Handler) {
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
}

type sink struct {
	h    http.Header
	code int
}

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) Write(p []byte) (int, error) { return len(p), nil }
func (s *sink) WriteHeader(code int)        { s.code = code }
