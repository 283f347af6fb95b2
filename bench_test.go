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

	g, err := sluice.New()
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

	b.Run("gateway", func(b *testing.B) {
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

type sink struct {
	h    http.Header
	code int
}

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) Write(p []byte) (int, error) { return len(p), nil }
func (s *sink) WriteHeader(code int)        { s.code = code }
