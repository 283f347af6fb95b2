package gate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
)

const statsYAML = `
port: 0
address: 127.0.0.1
rules:
  - paths:
      - pathPrefix: /a
        backend: a
      - pathPrefix: /b
        backend: b
`

// slowHandler answers after moving the fake clock by d, and writes body.
func slowHandler(c *clock.Fake, d time.Duration, code int) func(string) http.Handler {
	return func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.Advance(d)
			w.WriteHeader(code)
			io.WriteString(w, "12345")
		})
	}
}

func TestServerStats(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	s, err := New("s", mustSpec(t, statsYAML), Options{Resolve: slowHandler(fake, 5*time.Millisecond, 201)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Stats(); ok {
		t.Fatal("stats before EnableStats")
	}
	s.EnableStats(fake)
	srv := httptest.NewServer(s)
	defer srv.Close()
	long := "/a/" + strings.Repeat("é", 100) // 203 bytes: cut to 127, a character boundary
	for _, p := range []string{"/a/1", "/a/1", "/b", "/nope", long} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	st, ok := s.Stats()
	if !ok {
		t.Fatal("no stats")
	}
	if st.Server.Total != 5 || st.Server.Codes[201] != 4 || st.Server.Codes[404] != 1 || st.InFlight != 0 {
		t.Errorf("server: %+v", st.Server)
	}
	if st.Server.ResponseSize.Total < 20 {
		t.Errorf("response bytes %d", st.Server.ResponseSize.Total)
	}
	if len(st.Routes) != 2 || st.Routes[0].Stats.Total != 3 || st.Routes[1].Stats.Total != 1 || st.Routes[1].Backend != "b" {
		t.Errorf("routes: %+v", st.Routes)
	}
	if st.Routes[0].Stats.Latency.Max != 5*time.Millisecond {
		t.Errorf("route latency %+v", st.Routes[0].Stats.Latency)
	}
	if st.TopPaths[0].Key != "/a/1" || st.TopPaths[0].Count != 2 {
		t.Errorf("top: %+v", st.TopPaths)
	}
	capped := false
	for _, it := range st.TopPaths {
		if len(it.Key) > MaxTopPathLength {
			t.Errorf("top path not capped: %d bytes", len(it.Key))
		}
		if len(it.Key) == MaxTopPathLength-1 && strings.HasPrefix(long, it.Key) {
			capped = true
		}
	}
	if !capped {
		t.Errorf("the long path was not cut at a character boundary: %+v", st.TopPaths)
	}

	// A new generation with route b moved keeps a's figures, not b's.
	next, err := New("s", mustSpec(t, `
port: 0
address: 127.0.0.1
rules:
  - paths:
      - pathPrefix: /a
        backend: a
      - pathPrefix: /c
        backend: c
`), Options{Resolve: slowHandler(fake, time.Millisecond, 200)})
	if err != nil {
		t.Fatal(err)
	}
	next.EnableStats(fake)
	next.Inherit(s)
	st, _ = next.Stats()
	if st.Server.Total != 5 || st.Routes[0].Stats.Total != 3 || st.Routes[1].Stats.Total != 0 {
		t.Errorf("after inherit: server %d, routes %d %d", st.Server.Total, st.Routes[0].Stats.Total, st.Routes[1].Stats.Total)
	}
}

func TestStatsWriterPassesControls(t *testing.T) {
	fake := clock.NewFake(time.Unix(0, 0))
	s, err := New("s", mustSpec(t, statsYAML), Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := w.(http.Flusher); !ok {
				t.Error("not a Flusher")
			}
			if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				t.Errorf("deadline: %v", err)
			}
			io.WriteString(w, "x")
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.EnableStats(fake)
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// BenchmarkServerStats is the cost of a server's statistics alone: a
// request routed to a handler that writes a short body, in memory, with
// stats on and off.
func BenchmarkServerStats(b *testing.B) {
	for _, on := range []bool{true, false} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			s, err := New("s", mustSpec(b, statsYAML), Options{Resolve: named})
			if err != nil {
				b.Fatal(err)
			}
			if on {
				s.EnableStats(nil)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &nopWriter{h: http.Header{}}
				r := httptest.NewRequest("GET", "/a/bench", nil)
				for pb.Next() {
					s.ServeHTTP(w, r)
				}
			})
		})
	}
}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}
