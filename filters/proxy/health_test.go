package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// The health tests run real backends on loopback and drive time with a
// fake clock. Where the checker goroutine must catch up, they poll with a
// bounded loop; no assertion depends on how long anything takes.

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// waitFor polls cond for up to 10s and fails the test if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

// checkRound waits until the checker waits on clk, advances clk by d and
// waits until every server of pool has been checked k times in all.
func checkRound(t *testing.T, f pipeline.Filter, clk *filtertest.FakeClock, d time.Duration, pool, k int) {
	t.Helper()
	waitFor(t, "the checker to wait for its timer", func() bool { return clk.Waiters() > 0 })
	clk.Advance(d)
	waitFor(t, fmt.Sprintf("health check round %d", k), func() bool {
		for _, s := range status(t, f).Pools[pool].Servers {
			if s.Checks < uint64(k) {
				return false
			}
		}
		return true
	})
}

// healthBackend answers /healthz with 200 "ok" while healthy, and
// otherwise with 503 or with 200 "degraded" (for expectedBody); other
// paths get its name, or 500 while fail is set.
type healthBackend struct {
	*filtertest.Backend
	sick, fail atomic.Bool
	bodyOnly   bool
}

func newHealthBackend(t *testing.T, name string, bodyOnly bool) *healthBackend {
	hb := &healthBackend{bodyOnly: bodyOnly}
	hb.Backend = filtertest.NewBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" && hb.sick.Load() && hb.bodyOnly:
			io.WriteString(w, "degraded")
		case r.URL.Path == "/healthz" && hb.sick.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/healthz":
			io.WriteString(w, "ok")
		case hb.fail.Load():
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, name)
		default:
			io.WriteString(w, name)
		}
	}))
	return hb
}

// bodies sends n requests and returns the bodies joined.
func bodies(h *filtertest.Harness, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(h.Get("/").Body)
	}
	return b.String()
}

func TestActiveHealthCheck(t *testing.T) {
	t.Parallel()
	for _, bodyOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("bodyOnly=%v", bodyOnly), func(t *testing.T) {
			t.Parallel()
			a, b := newHealthBackend(t, "a", bodyOnly), newHealthBackend(t, "b", false)
			clk := filtertest.NewFakeClock(epoch)
			h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s}, {url: %s}]
  healthCheck:
    interval: 10s
    path: /healthz
    expectedBody: ok
    fails: 3
    passes: 2
`, a.URL, b.URL), filtertest.WithClock(clk))
			if got := bodies(h, 2); got != "ab" { // also starts the checker
				t.Fatalf("before any check: %q", got)
			}
			a.sick.Store(true)
			for k := 1; k <= 3; k++ {
				checkRound(t, h.Filter, clk, 10*time.Second, 0, k)
				healthy := status(t, h.Filter).Pools[0].Servers[0].Healthy
				if want := k < 3; healthy != want {
					t.Fatalf("after %d failed checks: healthy %v, want %v", k, healthy, want)
				}
			}
			if got := bodies(h, 6); got != "bbbbbb" {
				t.Errorf("with a down: %q", got)
			}
			a.sick.Store(false)
			for k := 4; k <= 5; k++ {
				checkRound(t, h.Filter, clk, 10*time.Second, 0, k)
				healthy := status(t, h.Filter).Pools[0].Servers[0].Healthy
				if want := k == 5; healthy != want {
					t.Fatalf("after %d passed checks: healthy %v, want %v", k-3, healthy, want)
				}
			}
			if got := bodies(h, 4); strings.Count(got, "a") != 2 {
				t.Errorf("with a up again: %q", got)
			}
			for _, s := range status(t, h.Filter).Pools[0].Servers {
				if s.Checks != 5 {
					t.Errorf("%s: %d checks, want 5", s.URL, s.Checks)
				}
			}
		})
	}
}

func TestHealthCheckSetsHostAndMethod(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, nil)
	clk := filtertest.NewFakeClock(epoch)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s/base}]
  setUpstreamHost: svc.internal
  healthCheck: {path: "/healthz?deep=1", method: HEAD}
`, be.URL), filtertest.WithClock(clk))
	h.Get("/x")
	checkRound(t, h.Filter, clk, proxy.DefaultHealthInterval, 0, 1)
	seen := be.Requests()
	if len(seen) != 2 || seen[1].Method != "HEAD" || seen[1].URL != "/base/healthz?deep=1" || seen[1].Host != "svc.internal" {
		t.Errorf("backend saw %+v", seen)
	}
}

func TestOutlierEjection(t *testing.T) {
	t.Parallel()
	a, b := newHealthBackend(t, "a", false), newHealthBackend(t, "b", false)
	a.fail.Store(true)
	clk := filtertest.NewFakeClock(epoch)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s}, {url: %s}]
  outlierDetection:
    consecutive5xx: 3
    ejectionTime: 30s
`, a.URL, b.URL), filtertest.WithClock(clk))
	// Round robin: a answers 500 three times in six requests, then is out.
	if got := bodies(h, 6); got != "ababab" {
		t.Fatalf("before ejection: %q", got)
	}
	if got := bodies(h, 6); got != "bbbbbb" {
		t.Errorf("with a ejected: %q", got)
	}
	if s := status(t, h.Filter).Pools[0].Servers[0]; !s.Ejected || !s.Healthy {
		t.Errorf("status of a: %+v", s)
	}
	clk.Advance(29 * time.Second)
	if got := bodies(h, 2); got != "bb" {
		t.Errorf("29s into the ejection: %q", got)
	}
	clk.Advance(time.Second)
	a.fail.Store(false)
	if got := bodies(h, 4); strings.Count(got, "a") != 2 {
		t.Errorf("after the ejection: %q", got)
	}
	if s := status(t, h.Filter).Pools[0].Servers[0]; s.Ejected {
		t.Errorf("status of a after the ejection: %+v", s)
	}
}

func TestOutlierConnectErrors(t *testing.T) {
	t.Parallel()
	b := filtertest.NewBackend(t, named("b"))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	clk := filtertest.NewFakeClock(epoch)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s}, {url: %s}]
  outlierDetection: {consecutiveConnectErrors: 2}
`, deadURL, b.URL), filtertest.WithClock(clk))
	var results []pipeline.Result
	for range 4 {
		results = append(results, h.Get("/").Result)
	}
	if fmt.Sprint(results) != fmt.Sprint([]pipeline.Result{proxy.ResultServerError, "", proxy.ResultServerError, ""}) {
		t.Fatalf("results %q", results)
	}
	if got := bodies(h, 4); got != "bbbb" {
		t.Errorf("with the dead server ejected: %q", got)
	}
	if s := status(t, h.Filter).Pools[0].Servers[0]; !s.Ejected {
		t.Errorf("status: %+v", s)
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	t.Parallel()
	var urls []string
	for range 4 {
		be := newHealthBackend(t, "x", false)
		be.fail.Store(true)
		urls = append(urls, "{url: "+be.URL+"}")
	}
	for percent, want := range map[int]int{25: 1, 50: 2, 74: 2, 100: 4} {
		t.Run(fmt.Sprint(percent), func(t *testing.T) {
			t.Parallel()
			h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [%s]
  outlierDetection: {consecutive5xx: 1, maxEjectionPercent: %d}
`, strings.Join(urls, ", "), percent), filtertest.WithClock(filtertest.NewFakeClock(epoch)))
			bodies(h, 40)
			ejected := 0
			for _, s := range status(t, h.Filter).Pools[0].Servers {
				if s.Ejected {
					ejected++
				}
			}
			if ejected != want {
				t.Errorf("maxEjectionPercent %d: %d of 4 ejected, want %d", percent, ejected, want)
			}
		})
	}
}

func TestFailOpen(t *testing.T) {
	t.Parallel()
	a, b := newHealthBackend(t, "a", false), newHealthBackend(t, "b", false)
	a.sick.Store(true)
	b.sick.Store(true)
	clk := filtertest.NewFakeClock(epoch)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s}, {url: %s}]
  healthCheck: {path: /healthz, fails: 1}
  loadBalance: {policy: ipHash}
`, a.URL, b.URL), filtertest.WithClock(clk))
	h.Get("/")
	checkRound(t, h.Filter, clk, proxy.DefaultHealthInterval, 0, 1)
	for _, s := range status(t, h.Filter).Pools[0].Servers {
		if s.Healthy {
			t.Fatalf("%s still healthy", s.URL)
		}
	}
	// Every server is down: the policy's choice stands.
	for range 4 {
		if out := h.Get("/"); out.Result != pipeline.Continue || (out.Body != "a" && out.Body != "b") {
			t.Errorf("with all servers down: result %q, body %q", out.Result, out.Body)
		}
	}
}

// TestHashPolicySkipsDownServer: with ipHash, the clients of a server that
// goes down move, and those of the others stay.
func TestHashPolicySkipsDownServer(t *testing.T) {
	t.Parallel()
	bes := []*healthBackend{newHealthBackend(t, "a", false), newHealthBackend(t, "b", false), newHealthBackend(t, "c", false)}
	clk := filtertest.NewFakeClock(epoch)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s}, {url: %s}, {url: %s}]
  healthCheck: {path: /healthz, fails: 1}
  loadBalance: {policy: ipHash}
`, bes[0].URL, bes[1].URL, bes[2].URL), filtertest.WithClock(clk))
	from := func(i int) *http.Request {
		r := request("GET", "/")
		r.RemoteAddr = fmt.Sprintf("192.0.2.%d:1000", i)
		return r
	}
	before := map[int]string{}
	for i := range 60 {
		before[i] = h.Do(from(i)).Body
	}
	bes[0].sick.Store(true)
	checkRound(t, h.Filter, clk, proxy.DefaultHealthInterval, 0, 1)
	for i := range 60 {
		got := h.Do(from(i)).Body
		if before[i] == "a" && got == "a" || before[i] != "a" && got != before[i] {
			t.Errorf("client %d: %q, then %q with a down", i, before[i], got)
		}
		if again := h.Do(from(i)).Body; again != got {
			t.Errorf("client %d: %q, then %q", i, got, again)
		}
	}
}

func TestHealthSurvivesInherit(t *testing.T) {
	t.Parallel()
	a, b, c := newHealthBackend(t, "a", false), newHealthBackend(t, "b", false), newHealthBackend(t, "c", false)
	a.sick.Store(true)
	b.fail.Store(true)
	spec := fmt.Sprintf(`
pools:
- servers: [{url: %s}, {url: %s}, {url: %s}]
  healthCheck: {path: /healthz, fails: 1}
  outlierDetection: {consecutive5xx: 2}
`, a.URL, b.URL, c.URL)
	clk := filtertest.NewFakeClock(epoch)
	old, err := filtertest.Build(proxy.Kind, spec, filtertest.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.(pipeline.Closer).Close() })
	do := func(f pipeline.Filter) string {
		c := pipeline.NewContext(request("GET", "/"))
		f.Handle(c)
		body, _ := io.ReadAll(c.Response().Body)
		c.Response().Body.Close()
		return string(body)
	}
	do(old) // starts the checker
	checkRound(t, old, clk, proxy.DefaultHealthInterval, 0, 1)
	for range 20 {
		do(old)
		if status(t, old).Pools[0].Servers[1].Ejected {
			break
		}
	}
	if st := status(t, old).Pools[0].Servers; st[0].Healthy || !st[1].Ejected {
		t.Fatalf("before the reload: %+v", st)
	}

	nu, err := filtertest.Build(proxy.Kind, spec, filtertest.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nu.(pipeline.Closer).Close() })
	if err := nu.(pipeline.Inheritor).Inherit(old); err != nil {
		t.Fatal(err)
	}
	old.(pipeline.Closer).Close()
	st := status(t, nu).Pools[0].Servers
	if st[0].Healthy || !st[1].Ejected || st[0].Checks != 1 {
		t.Errorf("after the reload: %+v", st)
	}
	for range 6 {
		if got := do(nu); got != "c" {
			t.Errorf("after the reload, a request went to %q", got)
		}
	}
}

// TestCloseStopsHealthChecker shows that Close ends the checker goroutine.
// It is not parallel, so no other test's goroutines come and go meanwhile.
func TestCloseStopsHealthChecker(t *testing.T) {
	be := httptest.NewServer(named("a"))
	defer be.Close()
	ignore := goleak.IgnoreCurrent()
	clk := filtertest.NewFakeClock(epoch)
	f, err := filtertest.Build(proxy.Kind, oneServer(be.URL, "healthCheck: {interval: 1s}"), filtertest.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	c := pipeline.NewContext(httptest.NewRequest(http.MethodGet, "/", nil))
	f.Handle(c)
	io.Copy(io.Discard, c.Response().Body)
	c.Response().Body.Close()
	checkRound(t, f, clk, time.Second, 0, 1)
	waitFor(t, "the checker to wait again", func() bool { return clk.Waiters() > 0 })
	buf := make([]byte, 1<<20)
	if !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*checker).run") {
		t.Fatal("no checker goroutine before Close: the test shows nothing")
	}
	f.(pipeline.Closer).Close()
	goleak.VerifyNone(t, ignore)
	if clk.Waiters() != 0 {
		t.Errorf("%d timers left on the clock", clk.Waiters())
	}
}

// TestCloseBeforeHandle: a Proxy closed before it served starts no checker.
func TestCloseBeforeHandle(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, nil)
	clk := filtertest.NewFakeClock(epoch)
	f, err := filtertest.Build(proxy.Kind, oneServer(be.URL, "healthCheck: {}"), filtertest.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	f.(pipeline.Closer).Close()
	c := pipeline.NewContext(httptest.NewRequest(http.MethodGet, "/", nil))
	f.Handle(c)
	if c.Response() != nil {
		c.Response().Body.Close()
	}
	if n := clk.Waiters(); n != 0 {
		t.Errorf("a closed Proxy started its checker: %d timers", n)
	}
}
