package sluice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/gate"
	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// statsGateway starts a gateway whose clock is fake and a backend that
// advances it by the latency the request asks for (?ms=N), so that every
// duration the gateway records is known exactly. It returns the gateway,
// the server's URL and the backend's URL.
func statsGateway(t *testing.T, opts ...sluice.Option) (*sluice.Gateway, string, string) {
	t.Helper()
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ms int
		if v := r.URL.Query().Get("ms"); v != "" {
			for _, c := range v {
				ms = ms*10 + int(c-'0')
			}
		}
		fake.Advance(time.Duration(ms) * time.Millisecond)
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, "hello")
	}))
	t.Cleanup(backend.Close)
	g := newGateway(t, append([]sluice.Option{sluice.WithClock(fake)}, opts...)...)
	apply(t, g, `
kind: HTTPServer
name: edge
port: 0
address: 127.0.0.1
rules:
  - paths:
    - pathPrefix: /api
      backend: api
    - pathPrefix: /other
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
	return g, "http://" + serverAddr(t, g, "edge"), backend.URL
}

func mustGet(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func objectStatus(t *testing.T, g *sluice.Gateway, name string) any {
	t.Helper()
	for _, o := range g.Status().Objects {
		if o.Name == name {
			return o.Status
		}
	}
	t.Fatalf("no object %q", name)
	return nil
}

// within reports whether got is within the stats' relative error of want.
func within(got, want time.Duration) bool {
	d := float64(got - want)
	return d <= float64(want)/100 && d >= -float64(want)/100
}

func TestStatsCountsAndPercentiles(t *testing.T) {
	g, url, backendURL := statsGateway(t)
	// 90 requests of 10ms, 10 of 200ms (2 of them failing), in order.
	for i := range 100 {
		q := "?ms=10"
		if i >= 90 {
			q = "?ms=200"
		}
		if i >= 98 {
			q += "&fail=1"
		}
		mustGet(t, url+"/api/items"+q)
	}
	mustGet(t, url+"/nowhere") // 404, not routed

	st := objectStatus(t, g, "edge").(gate.Status)
	if st.Stats == nil {
		t.Fatal("no server stats")
	}
	srv := st.Stats.Server
	if srv.Total != 101 || srv.Errors != 2 || srv.Codes[200] != 98 || srv.Codes[500] != 2 || srv.Codes[404] != 1 {
		t.Errorf("server counts: total %d errors %d codes %v", srv.Total, srv.Errors, srv.Codes)
	}
	api := st.Stats.Routes[0]
	if api.Name != "rules[0].paths[0]" || api.Backend != "api" || api.Stats.Total != 100 {
		t.Fatalf("route: %+v", api)
	}
	l := api.Stats.Latency
	if !within(l.P50, 10*time.Millisecond) || !within(l.P99, 200*time.Millisecond) || l.Min != 10*time.Millisecond || l.Max != 200*time.Millisecond {
		t.Errorf("route latency: p50 %v p99 %v min %v max %v", l.P50, l.P99, l.Min, l.Max)
	}
	if len(st.Stats.TopPaths) == 0 || st.Stats.TopPaths[0].Key != "/api/items" || st.Stats.TopPaths[0].Count != 100 {
		t.Errorf("top paths: %+v", st.Stats.TopPaths)
	}

	ps := objectStatus(t, g, "api").(pipeline.Status)
	if ps.Stats == nil || ps.Stats.Pipeline.Total != 100 || ps.Stats.Pipeline.Errors != 2 {
		t.Fatalf("pipeline stats: %+v", ps.Stats)
	}
	if f := ps.Stats.Filters[0]; f.Name != "proxy" || f.Kind != "Proxy" || f.Stats.Total != 100 || f.Results["continue"] != 100 {
		t.Errorf("filter stats: %+v", f)
	}
	if !within(ps.Stats.Pipeline.Latency.P50, 10*time.Millisecond) {
		t.Errorf("pipeline p50 %v", ps.Stats.Pipeline.Latency.P50)
	}
	b, _ := json.Marshal(ps.Filters["proxy"])
	var px struct {
		Pools []struct {
			Servers []struct {
				URL   string
				Stats pipeline.StatsSnapshot
			}
		}
	}
	if err := json.Unmarshal(b, &px); err != nil {
		t.Fatal(err)
	}
	be := px.Pools[0].Servers[0]
	if be.URL != backendURL || be.Stats.Total != 100 || be.Stats.Codes[500] != 2 ||
		!within(be.Stats.Latency.P50, 10*time.Millisecond) || !within(be.Stats.Latency.P99, 200*time.Millisecond) {
		t.Errorf("backend stats: %s %+v", be.URL, be.Stats)
	}
}

func TestStatsSurviveReload(t *testing.T) {
	g, url, backendURL := statsGateway(t)
	for range 5 {
		mustGet(t, url+"/api?ms=1")
	}
	// A new generation of both objects: another route order detail and a
	// pipeline with a pool timeout.
	apply(t, g, `
kind: HTTPServer
name: edge
port: 0
address: 127.0.0.1
keepAlive: false
rules:
  - paths:
    - pathPrefix: /api
      backend: api
    - pathPrefix: /other
      backend: api
---
kind: Pipeline
name: api
filters:
  - name: proxy
    kind: Proxy
    pools:
    - timeout: 30s
      servers:
      - url: `+backendURL+"\n")
	url = "http://" + serverAddr(t, g, "edge")
	for range 3 {
		mustGet(t, url+"/api?ms=1")
	}
	st := objectStatus(t, g, "edge").(gate.Status)
	if st.Stats.Server.Total != 8 || st.Stats.Routes[0].Stats.Total != 8 {
		t.Errorf("server total %d, route total %d; want 8", st.Stats.Server.Total, st.Stats.Routes[0].Stats.Total)
	}
	ps := objectStatus(t, g, "api").(pipeline.Status)
	if ps.Stats.Pipeline.Total != 8 || ps.Stats.Filters[0].Stats.Total != 8 {
		t.Errorf("pipeline total %d, filter %d; want 8", ps.Stats.Pipeline.Total, ps.Stats.Filters[0].Stats.Total)
	}
}

func TestStatsOff(t *testing.T) {
	g, url, _ := statsGateway(t, sluice.WithoutStats())
	mustGet(t, url+"/api?ms=1")
	if st := objectStatus(t, g, "edge").(gate.Status); st.Stats != nil {
		t.Errorf("server stats without stats: %+v", st.Stats)
	}
	if ps := objectStatus(t, g, "api").(pipeline.Status); ps.Stats != nil {
		t.Errorf("pipeline stats without stats: %+v", ps.Stats)
	}
}

func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://127.0.0.1/apis/v2/metrics", nil)
	req.RemoteAddr = "127.0.0.1:4000"
	req.Host = "localhost"
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("metrics: %d %s", rec.Code, rec.Body)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatalf("parsing the exposition: %v\n%s", err, rec.Body)
	}
	return fams
}

// series finds the metric of fam whose labels include want.
func series(fams map[string]*dto.MetricFamily, fam string, want map[string]string) *dto.Metric {
	f := fams[fam]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func TestMetricsExposition(t *testing.T) {
	g, url, backendURL := statsGateway(t)
	for i := range 10 {
		q := "?ms=3"
		if i == 9 {
			q = "?ms=3&fail=1"
		}
		mustGet(t, url+"/api"+q)
	}
	for _, h := range []http.Handler{g.AdminHandler(), g.MetricsHandler()} {
		fams := scrape(t, h)
		checks := []struct {
			fam    string
			labels map[string]string
			value  float64 // counter or gauge value; histogram count
		}{
			{"sluice_server_requests_total", map[string]string{"server": "edge", "code_class": "2xx"}, 9},
			{"sluice_server_requests_total", map[string]string{"server": "edge", "code_class": "5xx"}, 1},
			{"sluice_server_in_flight_requests", map[string]string{"server": "edge"}, 0},
			{"sluice_route_requests_total", map[string]string{"server": "edge", "route": "rules[0].paths[0]", "backend": "api", "code_class": "2xx"}, 9},
			{"sluice_route_request_duration_seconds", map[string]string{"server": "edge", "route": "rules[0].paths[0]"}, 10},
			{"sluice_pipeline_requests_total", map[string]string{"pipeline": "api", "code_class": "5xx"}, 1},
			{"sluice_pipeline_in_flight_requests", map[string]string{"pipeline": "api"}, 0},
			{"sluice_filter_duration_seconds", map[string]string{"pipeline": "api", "filter": "proxy", "kind": "Proxy"}, 10},
			{"sluice_backend_requests_total", map[string]string{"pipeline": "api", "filter": "proxy", "pool": "pools[0]", "upstream": backendURL, "code_class": "2xx"}, 9},
			{"sluice_backend_request_duration_seconds", map[string]string{"pipeline": "api", "filter": "proxy", "pool": "pools[0]", "upstream": backendURL}, 10},
		}
		for _, c := range checks {
			m := series(fams, c.fam, c.labels)
			if m == nil {
				t.Errorf("no series %s%v", c.fam, c.labels)
				continue
			}
			var got float64
			switch {
			case m.Counter != nil:
				got = m.Counter.GetValue()
			case m.Gauge != nil:
				got = m.Gauge.GetValue()
			case m.Histogram != nil:
				got = float64(m.Histogram.GetSampleCount())
				// Every attempt took 3ms: all in the 5ms bucket, none in
				// the 2.5ms one.
				for _, b := range m.Histogram.Bucket {
					want := uint64(10)
					if b.GetUpperBound() < 0.003 {
						want = 0
					}
					if b.GetCumulativeCount() != want {
						t.Errorf("%s bucket le=%g: %d, want %d", c.fam, b.GetUpperBound(), b.GetCumulativeCount(), want)
					}
				}
				if s := m.Histogram.GetSampleSum(); s < 0.0299 || s > 0.0301 {
					t.Errorf("%s sum %g, want 0.03", c.fam, s)
				}
			}
			if got != c.value {
				t.Errorf("%s%v = %g, want %g", c.fam, c.labels, got, c.value)
			}
		}
		if fams["sluice_backend_request_duration_seconds"].GetType() != dto.MetricType_HISTOGRAM {
			t.Errorf("backend latency is a %v", fams["sluice_backend_request_duration_seconds"].GetType())
		}
	}
}

func TestLogLevelAtRunTime(t *testing.T) {
	var buf syncBuffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelInfo)
	g := newGateway(t, sluice.WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: lv}))), sluice.WithLogLevel(lv))
	c := adminClient{t: t, h: g.AdminHandler(), addr: "127.0.0.1:5555"}
	if code, body := c.do("GET", "/apis/v2/loglevel", ""); code != 200 || !strings.Contains(body, `"INFO"`) {
		t.Fatalf("GET: %d %s", code, body)
	}
	if g.Logger().Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("debug enabled at info")
	}
	if code, body := c.do("PUT", "/apis/v2/loglevel", `{"level":"debug"}`); code != 200 || !strings.Contains(body, `"DEBUG"`) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if !g.Logger().Enabled(context.Background(), slog.LevelDebug) || g.LogLevel() != slog.LevelDebug {
		t.Error("debug not enabled after PUT")
	}
	g.Logger().Debug("now visible")
	if !strings.Contains(buf.String(), "now visible") {
		t.Errorf("log: %s", buf.String())
	}
	if code, _ := c.do("PUT", "/apis/v2/loglevel", `{"level":"error"}`); code != 200 {
		t.Fatal(code)
	}
	g.Logger().Warn("hidden")
	if strings.Contains(buf.String(), "hidden") {
		t.Error("warn logged at level error")
	}
	for _, bad := range []string{`{"level":"loud"}`, `nope`, `{"level":`, strings.Repeat("x", 5000)} {
		if code, body := c.do("PUT", "/apis/v2/loglevel", bad); code != 400 || !strings.Contains(body, `"message"`) {
			t.Errorf("PUT %.20q: %d %s", bad, code, body)
		}
	}
	// The default level follows the handler's.
	g2 := newGateway(t, sluice.WithLogger(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if g2.LogLevel() != slog.LevelWarn {
		t.Errorf("default level %v, want WARN", g2.LogLevel())
	}
}

func TestAdminStatusShowsStats(t *testing.T) {
	g, url, _ := statsGateway(t)
	mustGet(t, url+"/api?ms=2")
	c := adminClient{t: t, h: g.AdminHandler(), addr: "127.0.0.1:5555"}
	code, body := c.do("GET", "/apis/v2/status/objects/edge", "")
	if code != 200 {
		t.Fatal(code, body)
	}
	var out struct {
		Status struct {
			Stats struct {
				Server   pipeline.StatsSnapshot
				Routes   []gate.RouteStats
				TopPaths []pipeline.TopItem
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if out.Status.Stats.Server.Total != 1 || len(out.Status.Stats.Routes) != 2 || out.Status.Stats.TopPaths[0].Key != "/api" {
		t.Errorf("status: %s", body)
	}
	code, body = c.do("GET", "/apis/v2/status/objects", "")
	if code != 200 || !strings.Contains(body, `"recentLatency"`) || !strings.Contains(body, `"filters"`) {
		t.Errorf("all: %d %s", code, body)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestExplain(t *testing.T) {
	var seen syncBuffer // the explain header as the backend saw it
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Write([]byte(r.Header.Get("X-Why") + "|"))
		w.Header().Set("X-Why", "forged by the backend")
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	var logs syncBuffer
	g := newGateway(t, sluice.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	apply(t, g, `
kind: HTTPServer
name: edge
port: 0
address: 127.0.0.1
trustedProxies: [127.0.0.1/32]
explain: {enabled: true, header: X-Why}
rules:
  - paths:
    - pathPrefix: /api
      backend: api
---
kind: HTTPServer
name: plain
port: 0
address: 127.0.0.1
rules:
  - paths:
    - pathPrefix: /api
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
	edge := "http://" + serverAddr(t, g, "edge")

	// A loopback client that asks gets the account.
	resp := mustGet(t, edge+"/api/x", "X-Why", "1")
	got := resp.Header.Get("X-Why")
	for _, want := range []string{`route="rules[0].paths[0]" backend="api"`, `filter="proxy" kind="Proxy" result=continue took=`, `upstream pool=pools[0] server="` + backend.URL + `" status=200`} {
		if !strings.Contains(got, want) {
			t.Errorf("explain header %q lacks %q", got, want)
		}
	}
	if !strings.Contains(logs.String(), "msg=explain") || !strings.Contains(logs.String(), "upstream pool=pools[0]") {
		t.Errorf("no explain log line: %s", logs.String())
	}
	if s := seen.String(); s != "|" {
		t.Errorf("the backend saw the explain header: %q", s)
	}
	// A 404 is explained too.
	if got := mustGet(t, edge+"/nothing", "X-Why", "1").Header.Get("X-Why"); got != "route=none" {
		t.Errorf("404 explained as %q", got)
	}

	// Not asked, not on, or not trusted: no account; the backend's own
	// header is then passed on untouched.
	cases := []struct {
		name string
		resp func() *http.Response
	}{
		{"not asked", func() *http.Response { return mustGet(t, edge+"/api/x") }},
		{"explain off", func() *http.Response {
			return mustGet(t, "http://"+serverAddr(t, g, "plain")+"/api/x", "X-Why", "1")
		}},
		{"trusted proxy forwarding an outside client", func() *http.Response {
			return mustGet(t, edge+"/api/x", "X-Why", "1", "X-Forwarded-For", "203.0.113.7")
		}},
		{"untrusted peer", func() *http.Response {
			h, _ := g.Handler("edge")
			req := httptest.NewRequest("GET", "/api/x", nil)
			req.RemoteAddr = "198.51.100.9:4321"
			req.Header.Set("X-Why", "1")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec.Result()
		}},
	}
	for _, c := range cases {
		if got := c.resp().Header.Get("X-Why"); got != "forged by the backend" {
			t.Errorf("%s: header %q", c.name, got)
		}
	}

	// A bad header name is an error naming the field.
	err := g.ApplyYAML(context.Background(), strings.NewReader(`
kind: HTTPServer
name: bad
port: 0
explain: {enabled: true, header: "X Why"}
`))
	if err == nil || !strings.Contains(err.Error(), "explain.header") {
		t.Errorf("bad header: %v", err)
	}
}
