package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the proxy and not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func browserRequest() *http.Request {
	in := httptest.NewRequest(http.MethodGet, "/api/users/42?fields=name", nil)
	in.Header.Set("Accept", "application/json")
	in.Header.Set("Accept-Encoding", "gzip, deflate, br")
	in.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	in.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	in.Header.Set("Cookie", "session=abc")
	return in
}

// BenchmarkProxy sends GETs to a real backend on loopback. The backend runs
// in the same process, so B/op and allocs/op include its work too: "direct"
// is the same exchange through a bare, equally tuned transport, and the
// difference between the two is the Proxy's cost.
func BenchmarkProxy(b *testing.B) {
	body := []byte(`{"id":42,"name":"Ada"}`)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer be.Close()

	b.Run("direct", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConns: 10240, MaxIdleConnsPerHost: 1024, DisableCompression: true}
		defer tr.CloseIdleConnections()
		out := browserRequest()
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", be.Listener.Addr().String()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := tr.RoundTrip(out)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})

	b.Run("handle", func(b *testing.B) {
		p, err := proxy.New(pipeline.Env{}, &proxy.Spec{Pools: []proxy.PoolSpec{{Servers: []proxy.ServerSpec{{URL: be.URL}}}}})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		in := browserRequest()
		b.ReportAllocs()
		for b.Loop() {
			c := pipeline.NewContext(in)
			if res := p.Handle(c); res != pipeline.Continue {
				b.Fatalf("result %q", res)
			}
			io.Copy(io.Discard, c.Response().Body)
			c.Response().Body.Close()
		}
	})

	// handle with the resilience policies: a closed breaker (Acquire and
	// Done on the hot path), and a retry policy as well (the budget counts
	// every request; nothing fails, so nothing is retried).
	for _, bb := range []struct{ name, pool, policies string }{
		{"handle-breaker", "circuitBreakerPolicy: cb\n", fmt.Sprintf(breakerPolicy, 100, 100, "1m", 10)},
		{"handle-breaker-retry", "circuitBreakerPolicy: cb\nretryPolicy: retry\n", fmt.Sprintf(breakerPolicy, 100, 100, "1m", 10) + fmt.Sprintf(retryPolicy, 3, "10ms")},
	} {
		b.Run(bb.name, func(b *testing.B) {
			pl := newPipeline(b, nil, proxyPipeline(be.URL, bb.pool, bb.policies))
			f, _ := pl.Filter("proxy")
			in := browserRequest()
			b.ReportAllocs()
			for b.Loop() {
				c := pipeline.NewContext(in)
				if res := f.Handle(c); res != pipeline.Continue {
					b.Fatalf("result %q", res)
				}
				io.Copy(io.Discard, c.Response().Body)
				c.Response().Body.Close()
			}
		})
	}

	// The whole pipeline with a timeout set (context and body wrapper),
	// writing the response, from parallel clients.
	b.Run("pipeline-parallel", func(b *testing.B) {
		reg, err := pipeline.NewRegistry(proxy.Kind)
		if err != nil {
			b.Fatal(err)
		}
		spec, err := pipeline.NewBuilder("bench").Filter("proxy", "Proxy", proxy.Spec{
			Pools: []proxy.PoolSpec{{Servers: []proxy.ServerSpec{{URL: be.URL}}, Timeout: 30e9}},
		}).Spec()
		if err != nil {
			b.Fatal(err)
		}
		pl, err := pipeline.New(spec, reg, pipeline.Env{})
		if err != nil {
			b.Fatal(err)
		}
		defer pl.Close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			in := browserRequest()
			w := &discardWriter{h: http.Header{}}
			for pb.Next() {
				clear(w.h)
				pl.ServeHTTP(w, in)
			}
		})
	})
}

// BenchmarkShortCircuited measures a request the open breaker refuses: no
// server is contacted; the cost is the breaker's Acquire and the 503.
func BenchmarkShortCircuited(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer be.Close()
	pl := newPipeline(b, nil, proxyPipeline(be.URL, "failureCodes: [500]\ncircuitBreakerPolicy: cb\n", fmt.Sprintf(breakerPolicy, 1, 1, "1h", 1)))
	f, _ := pl.Filter("proxy")
	in := browserRequest()
	c := pipeline.NewContext(in)
	if res := f.Handle(c); res != proxy.ResultFailureCode {
		b.Fatalf("first request: %q", res)
	}
	c.Response().Body.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := pipeline.NewContext(in)
			if res := f.Handle(c); res != proxy.ResultShortCircuited {
				b.Fatalf("result %q", res)
			}
		}
	})
}

// cannedTransport answers every request with a 200 of body, without a
// network, so that a benchmark measures what the Proxy does to the
// response.
type cannedTransport struct {
	contentType string
	body        []byte
}

func (ct cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {ct.contentType}},
		Body:          io.NopCloser(bytes.NewReader(ct.body)),
		ContentLength: int64(len(ct.body)),
		Request:       r,
	}, nil
}

// BenchmarkCompression compresses a 12 KB JSON response with each
// algorithm, from the Proxy's Handle to the last compressed byte read;
// identity is the same exchange without compression.
func BenchmarkCompression(b *testing.B) {
	body := []byte(strings.Repeat(`{"id":42,"name":"Ada Lovelace","tags":["math","engines"]},`, 200))
	rt := cannedTransport{contentType: "application/json", body: body}
	spec := &proxy.Spec{
		Pools:       []proxy.PoolSpec{{Servers: []proxy.ServerSpec{{URL: "http://backend.test"}}}},
		Compression: &proxy.CompressionSpec{MinLength: 256},
	}
	p, err := proxy.New(pipeline.Env{Transport: rt}, spec)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for _, enc := range []string{"identity", "gzip", "br", "zstd"} {
		b.Run(enc, func(b *testing.B) {
			in := browserRequest()
			in.Header.Set("Accept-Encoding", enc)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				c := pipeline.NewContext(in)
				if res := p.Handle(c); res != pipeline.Continue {
					b.Fatalf("result %q", res)
				}
				resp := c.Response()
				if got := resp.Header.Get("Content-Encoding"); got != enc && enc != "identity" {
					b.Fatalf("Content-Encoding %q", got)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkCacheHit answers GETs from a pool's memory cache: the key, the
// lookup under the cache's lock, and the copy of the header and body
// reader for the response.
func BenchmarkCacheHit(b *testing.B) {
	var calls atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":42,"name":"Ada"}`))
	}))
	defer be.Close()
	p, err := proxy.New(pipeline.Env{}, &proxy.Spec{Pools: []proxy.PoolSpec{{
		Servers:     []proxy.ServerSpec{{URL: be.URL}},
		MemoryCache: &proxy.MemoryCacheSpec{Expiration: time.Hour},
	}}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	in := browserRequest()
	in.Header.Del("Cookie")
	run := func() {
		c := pipeline.NewContext(in)
		if res := p.Handle(c); res != pipeline.Continue {
			b.Fatalf("result %q", res)
		}
		io.Copy(io.Discard, c.Response().Body)
		c.Response().Body.Close()
	}
	run() // fills the cache
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			run()
		}
	})
	if n := calls.Load(); n != 1 {
		b.Fatalf("the server was called %d times, want once", n)
	}
}
