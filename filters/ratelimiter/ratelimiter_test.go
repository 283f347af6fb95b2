package ratelimiter_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/ratelimiter"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
	"github.com/sluicegw/sluice/resilience"
)

var start = time.Unix(1_700_000_000, 0)

// newFiltered builds a RateLimiter from spec on a fake clock.
func newFiltered(t *testing.T, spec string) (*filtertest.Harness, *filtertest.FakeClock) {
	t.Helper()
	clk := filtertest.NewFakeClock(start)
	return filtertest.New(t, ratelimiter.Kind, spec, filtertest.WithClock(clk)), clk
}

// request is a request from client (an IP) with optional header pairs.
func request(method, target, client string, header ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if client != "" {
		r.RemoteAddr = client + ":40000"
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func status(t *testing.T, h *filtertest.Harness) map[string]ratelimiter.PolicyStatus {
	t.Helper()
	st, ok := h.Filter.(pipeline.Statuser).Status().(ratelimiter.Status)
	if !ok {
		t.Fatalf("Status() is a %T", h.Filter.(pipeline.Statuser).Status())
	}
	out := map[string]ratelimiter.PolicyStatus{}
	for _, p := range st.Policies {
		out[p.Name] = p
	}
	return out
}

// admitted runs r and reports whether it was let through; a rejection
// must be a complete 429.
func admitted(t *testing.T, h *filtertest.Harness, r *http.Request) bool {
	t.Helper()
	out := h.Do(r)
	switch out.Result {
	case pipeline.Continue:
		if out.Response != nil {
			t.Fatalf("admitted request got a response: %d", out.Response.StatusCode)
		}
		return true
	case ratelimiter.RateLimited:
		checkRejection(t, out)
		return false
	}
	t.Fatalf("result %q", out.Result)
	return false
}

func checkRejection(t *testing.T, out *filtertest.Outcome) {
	t.Helper()
	if out.Result != ratelimiter.RateLimited || out.Response == nil {
		t.Fatalf("result %q, response %v: want a 429", out.Result, out.Response)
	}
	resp := out.Response
	if resp.StatusCode != http.StatusTooManyRequests || out.Body != "rate limit exceeded\n" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("rejection: %d %q %v", resp.StatusCode, out.Body, resp.Header)
	}
}

func TestBurstThenReject(t *testing.T) {
	h, clk := newFiltered(t, `
policies:
  - name: p
    limitForPeriod: 1
    limitRefreshPeriod: 1s
    timeoutDuration: 0s
    burst: 3
defaultPolicyRef: p
`)
	for i := range 3 {
		if !admitted(t, h, request("GET", "/", "")) {
			t.Fatalf("request %d of the burst was rejected", i+1)
		}
	}
	out := h.Get("/")
	checkRejection(t, out)
	if got := out.Response.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	if st := status(t, h)["p"]; st.Admitted != 3 || st.Rejected != 1 {
		t.Errorf("status %+v, want 3 admitted, 1 rejected", st)
	}
	clk.Advance(time.Second)
	if !admitted(t, h, request("GET", "/", "")) {
		t.Error("rejected after a permit was refilled")
	}
	if admitted(t, h, request("GET", "/", "")) {
		t.Error("a second request was admitted on one refilled permit")
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		period  string
		advance time.Duration // after the rejection, before asking again
		want    []string      // Retry-After of the two rejections
	}{
		{period: "100ms", want: []string{"1", "1"}, advance: 50 * time.Millisecond}, // less than a second: at least 1
		{period: "10s", want: []string{"10", "9"}, advance: time.Second},
		{period: "2500ms", want: []string{"3", "2"}, advance: time.Second}, // 2.5s and 1.5s round up
		{period: "1s", want: []string{"1", "1"}, advance: 999 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.period, func(t *testing.T) {
			h, clk := newFiltered(t, fmt.Sprintf(`
policies: [{name: p, limitForPeriod: 1, limitRefreshPeriod: %s, timeoutDuration: 0s, burst: 1}]
defaultPolicyRef: p
`, tt.period))
			if !admitted(t, h, request("GET", "/", "")) {
				t.Fatal("first request rejected")
			}
			for i, want := range tt.want {
				if i > 0 {
					clk.Advance(tt.advance)
				}
				out := h.Get("/")
				checkRejection(t, out)
				if got := out.Response.Header.Get("Retry-After"); got != want {
					t.Errorf("rejection %d: Retry-After = %q, want %q", i+1, got, want)
				}
			}
		})
	}
}

func waitForTimer(t *testing.T, clk *filtertest.FakeClock, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for clk.Waiters() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests waiting on the clock, want %d", clk.Waiters(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, done <-chan *filtertest.Outcome) *filtertest.Outcome {
	t.Helper()
	select {
	case out := <-done:
		return out
	case <-time.After(10 * time.Second):
		t.Fatal("Handle did not return")
		return nil
	}
}

// One permit per 100ms, a bucket of one, waits up to 150ms.
const waitSpec = `
policies: [{name: p, limitForPeriod: 1, limitRefreshPeriod: 100ms, timeoutDuration: 150ms, burst: 1}]
defaultPolicyRef: p
`

func TestWaitWithinTimeout(t *testing.T) {
	h, clk := newFiltered(t, waitSpec)
	if !admitted(t, h, request("GET", "/", "")) {
		t.Fatal("first request rejected")
	}
	done := make(chan *filtertest.Outcome, 1)
	go func() { done <- h.Get("/") }() // a permit in 100ms: waits
	waitForTimer(t, clk, 1)

	// A third request would wait 200ms, more than timeoutDuration: it is
	// rejected at once, with the time until a permit is free without
	// waiting (200ms, so 1s).
	third := h.Get("/")
	checkRejection(t, third)
	if got := third.Response.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q", got)
	}

	clk.Advance(99 * time.Millisecond)
	select {
	case out := <-done:
		t.Fatalf("the waiting request returned %q before its permit was due", out.Result)
	default:
	}
	clk.Advance(time.Millisecond)
	out := receive(t, done)
	if out.Result != pipeline.Continue || out.Response != nil {
		t.Fatalf("after the wait: result %q, response %v", out.Result, out.Response)
	}
	if st := status(t, h)["p"]; st.Admitted != 2 || st.Rejected != 1 {
		t.Errorf("status %+v, want 2 admitted, 1 rejected", st)
	}
}

func TestWaitCancelled(t *testing.T) {
	h, clk := newFiltered(t, waitSpec)
	h.Get("/")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *filtertest.Outcome, 1)
	go func() { done <- h.Do(request("GET", "/", "").WithContext(ctx)) }()
	waitForTimer(t, clk, 1)
	cancel()
	out := receive(t, done) // returns without the clock moving
	checkRejection(t, out)
	if n := clk.Waiters(); n != 0 {
		t.Errorf("%d timers left after the cancelled wait", n)
	}
	// The permit was handed back: after 100ms one request is admitted at
	// once, without a wait.
	clk.Advance(100 * time.Millisecond)
	if out := h.Get("/"); out.Result != pipeline.Continue || clk.Waiters() != 0 {
		t.Errorf("after the cancelled wait: %q, %d waiting", out.Result, clk.Waiters())
	}
}

// Three policies of one request each; which one counted a request shows
// which one it got.
const rulesSpec = `
policies:
  - {name: admin, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: pets, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: api, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: cats, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: birdsFish, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: other, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
urls:
  - methods: [POST, DELETE]
    url: { exact: /admin }
    policyRef: admin
  - url: { regex: '^/pets/\d+$' }
    policyRef: pets
  - methods: [GET]
    url: { prefix: /api/ }
    policyRef: api
  - url: { regex: '(?i)cats/\d+$' }
    policyRef: cats
  - url: { regex: '(^/dogs/\d+)$' }
    policyRef: cats
  - url: { regex: '^/birds/|/fish' }
    policyRef: birdsFish
  - url: { prefix: / }
    policyRef: other
`

func TestURLRuleSelection(t *testing.T) {
	tests := []struct {
		method, target string
		want           string // the policy that counts the request
	}{
		{"POST", "/admin", "admin"},
		{"DELETE", "/admin", "admin"},
		{"GET", "/admin", "other"},     // method not listed: the next rule that matches
		{"POST", "/admin/x", "other"},  // exact is exact
		{"post", "/admin", "other"},    // methods are case-sensitive
		{"GET", "/pets/42", "pets"},    // regex, any method
		{"PUT", "/pets/42", "pets"},    // regex, any method
		{"GET", "/pets/42/x", "other"}, // anchored regex
		{"GET", "/pets/abc", "other"},
		{"GET", "/api/v1/users", "api"},
		{"GET", "/api/v1/users?q=/admin", "api"}, // the query is not the path
		{"POST", "/api/v1/users", "other"},
		{"GET", "/api", "other"}, // the prefix's trailing slash counts
		{"GET", "/pets/1?x=y", "pets"},
		{"GET", "/zoo/cats/7", "cats"},  // an unanchored regex matches anywhere
		{"GET", "/CATS/7", "cats"},      // (?i)
		{"GET", "/dogs/7", "cats"},      // ^ inside a group
		{"GET", "/a/dogs/7", "other"},   // ... still anchors
		{"GET", "/birds", "other"},      // ^/birds|/fish: the second branch is not anchored
		{"GET", "/x/fish", "birdsFish"}, // ... and matches anywhere
		{"GET", "/birds/1", "birdsFish"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			h, _ := newFiltered(t, rulesSpec)
			if !admitted(t, h, request(tt.method, tt.target, "")) {
				t.Fatal("first request rejected")
			}
			if admitted(t, h, request(tt.method, tt.target, "")) {
				t.Fatal("second request admitted with a bucket of one")
			}
			for name, st := range status(t, h) {
				want := ratelimiter.PolicyStatus{Name: name}
				if name == tt.want {
					want.Admitted, want.Rejected = 1, 1
				}
				if st != want {
					t.Errorf("policy %s: %+v, want %+v", name, st, want)
				}
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	const policies = `
policies:
  - {name: strict, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: loose, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 5}
`
	t.Run("no default: unmatched requests are not limited", func(t *testing.T) {
		h, _ := newFiltered(t, policies+"urls: [{url: {prefix: /limited/}, policyRef: strict}]\n")
		for i := range 20 {
			if !admitted(t, h, request("GET", "/free", "")) {
				t.Fatalf("unmatched request %d rejected", i+1)
			}
		}
		admitted(t, h, request("GET", "/limited/a", ""))
		if admitted(t, h, request("GET", "/limited/a", "")) {
			t.Error("matched request not limited")
		}
		st := status(t, h)
		if st["strict"].Admitted != 1 || st["strict"].Rejected != 1 || st["loose"] != (ratelimiter.PolicyStatus{Name: "loose"}) {
			t.Errorf("status %+v", st)
		}
	})
	t.Run("default limits unmatched requests and rules without policyRef", func(t *testing.T) {
		h, _ := newFiltered(t, policies+`
defaultPolicyRef: strict
urls:
  - {url: {prefix: /loose/}, policyRef: loose}
  - {url: {prefix: /noref/}}
`)
		if !admitted(t, h, request("GET", "/free", "")) || admitted(t, h, request("GET", "/free", "")) {
			t.Error("unmatched requests: want one admitted, then rejected")
		}
		// The rule without a policyRef takes the default policy and, with
		// key "", its one bucket, now empty.
		if admitted(t, h, request("GET", "/noref/x", "")) {
			t.Error("a rule without policyRef did not use the default policy's bucket")
		}
		for i := range 5 {
			if !admitted(t, h, request("GET", "/loose/x", "")) {
				t.Fatalf("loose request %d rejected", i+1)
			}
		}
		if st := status(t, h); st["strict"].Admitted != 1 || st["strict"].Rejected != 2 || st["loose"].Admitted != 5 {
			t.Errorf("status %+v", st)
		}
	})
}

func TestKeys(t *testing.T) {
	const one = "limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1"
	long := strings.Repeat("k", 100)
	type req struct {
		target, client string
		header         []string
		admit          bool
	}
	tests := []struct {
		name string
		spec string
		reqs []req
	}{
		{
			name: "global: every client shares one bucket",
			spec: "policies: [{name: p, " + one + "}]\ndefaultPolicyRef: p\n",
			reqs: []req{{"/", "10.0.0.1", nil, true}, {"/", "10.0.0.2", nil, false}},
		},
		{
			name: "clientIP isolates clients",
			spec: "policies: [{name: p, key: clientIP, " + one + "}]\ndefaultPolicyRef: p\n",
			reqs: []req{
				{"/", "10.0.0.1", nil, true}, {"/", "10.0.0.1", nil, false},
				{"/", "10.0.0.2", nil, true}, {"/", "10.0.0.2", nil, false},
				{"/", "2001:db8::1", nil, true}, {"/", "2001:db8::1", nil, false},
			},
		},
		{
			name: "header isolates values; no header and an empty one share a bucket",
			spec: "policies: [{name: p, key: 'header:x-api-key', " + one + "}]\ndefaultPolicyRef: p\n",
			reqs: []req{
				{"/", "10.0.0.1", []string{"X-Api-Key", "k1"}, true},
				{"/", "10.0.0.2", []string{"X-Api-Key", "k1"}, false}, // same key, other IP
				{"/", "10.0.0.1", []string{"X-Api-Key", "k2"}, true},
				{"/", "10.0.0.1", []string{"X-Api-Key", "k2", "X-Api-Key", "k3"}, false}, // the first value counts
				{"/", "10.0.0.1", nil, true},
				{"/", "10.0.0.2", []string{"X-Api-Key", ""}, false},
				{"/", "10.0.0.1", []string{"X-Other", "k9"}, false},
			},
		},
		{
			name: "long header values are keyed by a hash of the whole value",
			spec: "policies: [{name: p, key: 'header:X-Api-Key', " + one + "}]\ndefaultPolicyRef: p\n",
			reqs: []req{
				{"/", "", []string{"X-Api-Key", long + "a"}, true},
				{"/", "", []string{"X-Api-Key", long + "b"}, true},
				{"/", "", []string{"X-Api-Key", long + "a"}, false},
				{"/", "", []string{"X-Api-Key", long + "b"}, false},
			},
		},
		{
			name: "route: a bucket per url rule and one for unmatched requests",
			spec: "policies: [{name: p, key: route, " + one + "}]\ndefaultPolicyRef: p\n" +
				"urls: [{url: {prefix: /a/}, policyRef: p}, {url: {prefix: /b/}, policyRef: p}]\n",
			reqs: []req{
				{"/a/1", "", nil, true}, {"/a/2", "", nil, false},
				{"/b/1", "", nil, true}, {"/b/2", "", nil, false},
				{"/c", "", nil, true}, {"/d", "", nil, false},
			},
		},
		{
			name: "no key: url rules naming one policy share its bucket",
			spec: "policies: [{name: p, " + one + "}]\n" +
				"urls: [{url: {prefix: /a/}, policyRef: p}, {url: {prefix: /b/}, policyRef: p}]\n",
			reqs: []req{{"/a/1", "", nil, true}, {"/b/1", "", nil, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newFiltered(t, tt.spec)
			for i, r := range tt.reqs {
				if got := admitted(t, h, request("GET", r.target, r.client, r.header...)); got != r.admit {
					t.Errorf("request %d %+v: admitted %v, want %v", i+1, r, got, r.admit)
				}
			}
		})
	}
}

func TestClientIPWithoutPort(t *testing.T) {
	h, _ := newFiltered(t, "policies: [{name: p, key: clientIP, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}]\ndefaultPolicyRef: p\n")
	for _, tt := range []struct {
		addr  string
		admit bool
	}{
		{"10.0.0.9", true},         // no port: the whole address
		{"10.0.0.9:1234", false},   // the same client with a port
		{"[2001:db8::9]:1", true},  // IPv6 with a port
		{"2001:db8::9", false},     // the same client without
		{"[2001:db8::10]:1", true}, // another client
	} {
		r := request("GET", "/", "")
		r.RemoteAddr = tt.addr
		if got := admitted(t, h, r); got != tt.admit {
			t.Errorf("RemoteAddr %q: admitted %v, want %v", tt.addr, got, tt.admit)
		}
	}
}

func TestKeyedMemoryIsBounded(t *testing.T) {
	h, _ := newFiltered(t, `
policies:
  - {name: ip, key: clientIP, maxKeys: 100, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: hdr, key: 'header:X-Key', maxKeys: 50, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
urls: [{url: {prefix: /h}, policyRef: hdr}]
defaultPolicyRef: ip
`)
	for i := range 1000 {
		client := fmt.Sprintf("10.0.%d.%d", i/256, i%256)
		admitted(t, h, request("GET", "/", client))
		admitted(t, h, request("GET", "/h", "", "X-Key", strings.Repeat("v", i%200)+client))
		if st := status(t, h); st["ip"].Keys > 100 || st["hdr"].Keys > 50 {
			t.Fatalf("after %d clients: %d and %d keys, bounds 100 and 50", i+1, st["ip"].Keys, st["hdr"].Keys)
		}
	}
	st := status(t, h)
	if st["ip"].Keys != 100 || st["hdr"].Keys != 50 {
		t.Errorf("keys %d and %d, want the bounds 100 and 50", st["ip"].Keys, st["hdr"].Keys)
	}
	if st["ip"].Admitted != 1000 {
		t.Errorf("%d of 1000 distinct clients admitted", st["ip"].Admitted)
	}
	// The most recent client is still held: its bucket is empty. The
	// first was dropped long ago and starts again with a full bucket.
	if admitted(t, h, request("GET", "/", "10.0.3.231")) {
		t.Error("the most recent client's bucket was lost")
	}
	if !admitted(t, h, request("GET", "/", "10.0.0.0")) {
		t.Error("an evicted client did not get a fresh bucket")
	}
}

// TestConcurrent lets many goroutines race for one bucket: with the clock
// standing still exactly the burst is admitted.
func TestConcurrent(t *testing.T) {
	for _, key := range []string{"", "route", "clientIP"} {
		t.Run("key "+key, func(t *testing.T) {
			h, _ := newFiltered(t, fmt.Sprintf(`
policies: [{name: p, key: %q, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 25}]
defaultPolicyRef: p
`, key))
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for range 10 {
						h.Do(request("GET", "/", "10.1.1.1"))
					}
				})
			}
			wg.Wait()
			if st := status(t, h)["p"]; st.Admitted != 25 || st.Rejected != 135 {
				t.Errorf("status %+v, want 25 admitted and 135 rejected", st)
			}
		})
	}
}

// TestNeverAdmitsMoreThanRate drives a limiter with random traffic on a
// fake clock and checks every window between two admissions: a bucket
// admits at most rate × t + burst requests in any window of length t.
func TestNeverAdmitsMoreThanRate(t *testing.T) {
	specs := []struct{ lfp, burst int }{{5, 1}, {5, 10}, {1, 3}, {50, 50}}
	for _, s := range specs {
		for _, key := range []string{"", "clientIP"} {
			for seed := range uint64(4) {
				t.Run(fmt.Sprintf("%d per 10ms burst %d key %q seed %d", s.lfp, s.burst, key, seed), func(t *testing.T) {
					checkRate(t, s.lfp, s.burst, key, seed)
				})
			}
		}
	}
}

func checkRate(t *testing.T, lfp, burst int, key string, seed uint64) {
	const period = 10 * time.Millisecond
	h, clk := newFiltered(t, fmt.Sprintf(`
policies: [{name: p, key: %q, limitRefreshPeriod: 10ms, limitForPeriod: %d, burst: %d, timeoutDuration: 0s}]
defaultPolicyRef: p
`, key, lfp, burst))
	rng := rand.New(rand.NewPCG(seed, 42))
	clients := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	admits := map[string][]time.Duration{} // per bucket, clock offsets
	var elapsed time.Duration
	requests := 0
	for elapsed < time.Second {
		// Bursts, dense trickles and idle spells.
		switch rng.IntN(10) {
		case 0:
			elapsed += time.Duration(rng.IntN(200)) * time.Millisecond
		case 1, 2, 3:
			elapsed += time.Duration(rng.IntN(int(period)))
		default:
			elapsed += time.Duration(rng.IntN(int(period) / 10))
		}
		clk.Advance(elapsed - (clk.Now().Sub(start)))
		for range rng.IntN(2*burst + 2) {
			client := clients[rng.IntN(len(clients))]
			requests++
			if admitted(t, h, request("GET", "/", client)) {
				bucket := client
				if key == "" {
					bucket = ""
				}
				admits[bucket] = append(admits[bucket], elapsed)
			}
		}
	}
	total := 0
	for bucket, ts := range admits {
		total += len(ts)
		// Every window [ts[i], ts[j]] holds j-i+1 admissions.
		for i := range ts {
			for j := i; j < len(ts); j++ {
				n, dt := int64(j-i+1), int64(ts[j]-ts[i])
				// n ≤ lfp × dt / period + burst, in integers.
				if (n-int64(burst))*int64(period) > dt*int64(lfp) {
					t.Fatalf("bucket %q: %d admissions in %v (from %v), more than %d per %v × t + %d",
						bucket, n, time.Duration(dt), ts[i], lfp, period, burst)
				}
			}
		}
	}
	st := status(t, h)["p"]
	if int(st.Admitted) != total || int(st.Admitted+st.Rejected) != requests {
		t.Errorf("status %+v, want %d admitted of %d", st, total, requests)
	}
	if total == 0 || st.Rejected == 0 {
		t.Errorf("the traffic did not exercise the limiter: %d admitted, %d rejected", total, st.Rejected)
	}
}

// inherit builds a filter from spec and hands it prev's state, as a
// pipeline reload does.
func inherit(t *testing.T, clk *filtertest.FakeClock, prev *filtertest.Harness, spec string) *filtertest.Harness {
	t.Helper()
	h := filtertest.New(t, ratelimiter.Kind, spec, filtertest.WithClock(clk))
	if err := h.Filter.(pipeline.Inheritor).Inherit(prev.Filter); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestInherit(t *testing.T) {
	const spec = `
policies:
  - {name: g, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: ip, key: clientIP, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
  - {name: r, key: route, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}
defaultPolicyRef: g
urls:
  - {url: {prefix: /ip/}, policyRef: ip}
  - {url: {prefix: /r1/}, policyRef: r}
  - {url: {prefix: /r2/}, policyRef: r}
`
	clk := filtertest.NewFakeClock(start)
	h1 := filtertest.New(t, ratelimiter.Kind, spec, filtertest.WithClock(clk))
	for _, target := range []string{"/", "/ip/", "/r1/", "/r2/"} {
		if !admitted(t, h1, request("GET", target, "10.0.0.1")) {
			t.Fatalf("%s: first request rejected", target)
		}
	}

	t.Run("unchanged spec keeps every bucket and counter", func(t *testing.T) {
		h2 := inherit(t, clk, h1, spec)
		for _, target := range []string{"/", "/ip/", "/r1/", "/r2/"} {
			if admitted(t, h2, request("GET", target, "10.0.0.1")) {
				t.Errorf("%s: a reload handed out a fresh bucket", target)
			}
		}
		if !admitted(t, h2, request("GET", "/ip/", "10.0.0.2")) {
			t.Error("a new client of the inherited keyed policy was rejected")
		}
		st := status(t, h2)
		if st["g"].Admitted != 1 || st["g"].Rejected != 1 || st["ip"].Admitted != 2 || st["r"].Admitted != 2 || st["r"].Rejected != 2 {
			t.Errorf("counters not carried over: %+v", st)
		}
		// The old generation, still serving until the swap, shares them.
		if admitted(t, h1, request("GET", "/", "")) || status(t, h2)["g"].Rejected != 2 {
			t.Error("the old generation does not share the bucket and counters")
		}
	})

	t.Run("a changed policy starts afresh, the others keep theirs", func(t *testing.T) {
		changed := strings.Replace(spec, "{name: g, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 1}",
			"{name: g, limitForPeriod: 1, limitRefreshPeriod: 1h, timeoutDuration: 0s, burst: 2}", 1)
		h3 := inherit(t, clk, h1, changed)
		if !admitted(t, h3, request("GET", "/", "")) {
			t.Error("the changed policy kept its old bucket")
		}
		if st := status(t, h3)["g"]; st.Admitted != 1 || st.Rejected != 0 {
			t.Errorf("the changed policy kept its counters: %+v", st)
		}
		if admitted(t, h3, request("GET", "/ip/", "10.0.0.1")) || admitted(t, h3, request("GET", "/r1/", "")) {
			t.Error("an unchanged policy lost its buckets")
		}
	})

	t.Run("a changed url rule gets a fresh route bucket", func(t *testing.T) {
		changed := strings.Replace(spec, "{url: {prefix: /r2/}, policyRef: r}", "{methods: [GET], url: {prefix: /r2/}, policyRef: r}", 1)
		h4 := inherit(t, clk, h1, changed)
		if admitted(t, h4, request("GET", "/r1/", "")) {
			t.Error("the unchanged rule /r1/ lost its bucket")
		}
		if !admitted(t, h4, request("GET", "/r2/", "")) {
			t.Error("the changed rule /r2/ kept its old bucket")
		}
	})

	t.Run("a renamed policy is a new policy", func(t *testing.T) {
		renamed := strings.ReplaceAll(spec, "g", "g2")
		h5 := inherit(t, clk, h1, renamed)
		if !admitted(t, h5, request("GET", "/", "")) {
			t.Error("a renamed policy inherited a bucket")
		}
	})

	t.Run("another filter is ignored", func(t *testing.T) {
		f, err := filtertest.Build(ratelimiter.Kind, spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.(pipeline.Inheritor).Inherit(pipeline.FilterFunc(func(*pipeline.Context) pipeline.Result { return "" })); err != nil {
			t.Error(err)
		}
	})
}

func TestBadSpec(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want string // regexp the error must match
	}{
		{"no policies", "policies: []\n", `^line 1: field "policies": invalid RateLimiter spec: at least one policy is required`},
		{"no policies at all", "defaultPolicyRef: x\n", `^line 1: field "policies": .*at least one policy`},
		{"unknown top-level field", "policies: [{name: a}]\nurl: []\n", `^line 2: field "url": unknown field`},
		{"unknown policy field", "policies:\n  - name: a\n    limitForPerod: 3\n", `^line 3: field "policies\[0\]\.limitForPerod": unknown field`},
		{"unknown url field", "policies: [{name: a}]\nurls:\n  - url: {exact: /a}\n    policyref: a\n", `^line 4: field "urls\[0\]\.policyref": unknown field`},
		{"unknown url match field", "policies: [{name: a}]\nurls:\n  - url:\n      path: /a\n", `^line 4: field "urls\[0\]\.url\.path": unknown field`},
		{"mistyped value", "policies:\n  - name: a\n    limitForPeriod: lots\n", `^line 3: field "policies\[0\]\.limitForPeriod": .*cannot unmarshal`},
		{"duration without unit", "policies:\n  - name: a\n    timeoutDuration: 100\n", `^line 3: field "policies\[0\]\.timeoutDuration": .*cannot unmarshal`},
		{"policy without name", "policies:\n  - name: a\n  - limitForPeriod: 3\n", `^line 3: field "policies\[1\]\.name": .*a policy needs a name`},
		{"duplicate policy", "policies:\n  - name: a\n  - name: b\n  - name: a\n", `^line 4: field "policies\[2\]\.name": duplicate policy name "a" \(also policies\[0\]\)`},
		{"zero limitForPeriod", "policies:\n  - name: a\n    limitForPeriod: 0\n", `^line 3: field "policies\[0\]\.limitForPeriod": invalid resilience spec: must be at least 1`},
		{"zero refresh period", "policies:\n  - name: a\n    limitRefreshPeriod: 0s\n", `^line 3: field "policies\[0\]\.limitRefreshPeriod": .*must be more than 0`},
		{"negative timeout", "policies:\n  - name: a\n    timeoutDuration: -1s\n", `^line 3: field "policies\[0\]\.timeoutDuration": .*must not be negative`},
		{"negative burst", "policies:\n  - name: a\n  - name: b\n    burst: -1\n", `^line 4: field "policies\[1\]\.burst": .*must not be negative`},
		{"zero maxKeys", "policies:\n  - name: a\n    key: clientIP\n    maxKeys: 0\n", `^line 4: field "policies\[0\]\.maxKeys": .*must be at least 1, got 0`},
		{"bad key", "policies:\n  - name: a\n    key: ip\n", `^line 3: field "policies\[0\]\.key": .*must be "", "clientIP", "route" or "header:<name>", got "ip"`},
		{"key is case-sensitive", "policies:\n  - name: a\n    key: ClientIP\n", `^line 3: field "policies\[0\]\.key": .*got "ClientIP"`},
		{"bad header key", "policies:\n  - name: a\n    key: 'header:X Key'\n", `^line 3: field "policies\[0\]\.key": .*"X Key" is not a valid header name`},
		{"empty header key", "policies:\n  - name: a\n    key: 'header:'\n", `^line 3: field "policies\[0\]\.key": .*"" is not a valid header name`},
		{"unknown defaultPolicyRef", "policies:\n  - name: a\n  - name: b\ndefaultPolicyRef: c\n", `^line 4: field "defaultPolicyRef": unknown policy "c" \(policies: \[a b\]\)`},
		{"unknown policyRef", "policies: [{name: a}]\nurls:\n  - url: {exact: /a}\n    policyRef: a\n  - url: {exact: /b}\n    policyRef: fast\n", `^line 6: field "urls\[1\]\.policyRef": unknown policy "fast"`},
		{"no policyRef and no default", "policies: [{name: a}]\nurls:\n  - url: {exact: /a}\n", `^line 3: field "urls\[0\]\.policyRef": .*required when there is no defaultPolicyRef`},
		{"no url match", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - url: {}\n", `^line 4: field "urls\[0\]\.url": .*set exactly one of exact, prefix and regex`},
		{"url missing", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - methods: [GET]\n", `^line 4: field "urls\[0\]\.url": .*set exactly one`},
		{"two url matches", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - url:\n      exact: /a\n      prefix: /b\n", `^line 4: field "urls\[0\]\.url": .*set exactly one`},
		{"bad regex", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - url:\n      regex: '^/pets/(\\d+$'\n", `^line 5: field "urls\[0\]\.url\.regex": .*error parsing regexp`},
		{"exact without slash", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - url: {exact: admin}\n", `^line 4: field "urls\[0\]\.url\.exact": .*must start with /`},
		{"prefix without slash", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - url:\n      prefix: api/\n", `^line 5: field "urls\[0\]\.url\.prefix": .*must start with /`},
		{"lowercase method", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - methods: [GET, post]\n    url: {exact: /a}\n", `^line 4: field "urls\[0\]\.methods\[1\]": .*case-sensitive: "POST", not "post"`},
		{"bad method", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - methods:\n      - 'GE T'\n    url: {exact: /a}\n", `^line 5: field "urls\[0\]\.methods\[0\]": .*"GE T" is not a valid method`},
		{"duplicate method", "policies: [{name: a}]\ndefaultPolicyRef: a\nurls:\n  - methods: [GET, GET]\n    url: {exact: /a}\n", `field "urls\[0\]\.methods\[1\]": .*"GET" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			filtertest.ExpectBuildError(t, ratelimiter.Kind, tt.spec, tt.want)
		})
	}
}

func TestErrorsWrapSentinels(t *testing.T) {
	tests := []struct {
		spec string
		want error
	}{
		{"policies:\n  - name: a\n    limitForPerod: 3\n", pipeline.ErrUnknownField},
		{"policies: [{name: a}, {name: a}]\n", ratelimiter.ErrDuplicatePolicy},
		{"policies: [{name: a}]\ndefaultPolicyRef: b\n", ratelimiter.ErrUnknownPolicy},
		{"policies: [{name: a, key: nope}]\n", ratelimiter.ErrInvalidSpec},
		{"policies: [{name: a, limitForPeriod: -1}]\n", resilience.ErrInvalidSpec},
	}
	for _, tt := range tests {
		_, err := filtertest.Build(ratelimiter.Kind, tt.spec)
		var fe *pipeline.FieldError
		if !errors.Is(err, tt.want) || !errors.As(err, &fe) || fe.Line == 0 || fe.Field == "" {
			t.Errorf("%q: %v, want a placed FieldError wrapping %v", tt.spec, err, tt.want)
		}
	}
}

// A policy's fields left out of the YAML take their defaults; written
// ones, zero included, are kept.
func TestYAMLDefaults(t *testing.T) {
	raw, err := pipeline.ParseRaw([]byte(`
policies:
  - name: defaults
  - name: explicit
    limitRefreshPeriod: 1s
    limitForPeriod: 7
    timeoutDuration: 0s
    burst: 9
    key: clientIP
    maxKeys: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	var s ratelimiter.Spec
	if err := pipeline.DecodeSpec(raw, &s); err != nil {
		t.Fatal(err)
	}
	var def ratelimiter.Policy
	def.SetDefaults()
	def.Name = "defaults"
	want := []ratelimiter.Policy{def, {
		Name:        "explicit",
		LimiterSpec: resilience.LimiterSpec{LimitRefreshPeriod: time.Second, LimitForPeriod: 7, Burst: 9},
		Key:         "clientIP",
		MaxKeys:     3,
	}}
	if len(s.Policies) != 2 || s.Policies[0] != want[0] || s.Policies[1] != want[1] {
		t.Errorf("decoded %+v\nwant    %+v", s.Policies, want)
	}
	if def.LimitRefreshPeriod != 10*time.Millisecond || def.LimitForPeriod != 50 || def.TimeoutDuration != 100*time.Millisecond ||
		def.Burst != 0 || def.MaxKeys != 10000 {
		t.Errorf("defaults %+v, want Easegress's 10ms, 50, 100ms and maxKeys 10000", def)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	spec := ratelimiter.Spec{
		Policies: []ratelimiter.Policy{
			{Name: "fast", LimiterSpec: resilience.LimiterSpec{LimitRefreshPeriod: 10 * time.Millisecond, LimitForPeriod: 50, TimeoutDuration: 100 * time.Millisecond, Burst: 100}, MaxKeys: 10000},
			{Name: "strict", LimiterSpec: resilience.LimiterSpec{LimitRefreshPeriod: time.Second, LimitForPeriod: 1}, Key: "header:X-Api-Key", MaxKeys: 5},
			{Name: "routes", LimiterSpec: resilience.LimiterSpec{LimitRefreshPeriod: time.Minute, LimitForPeriod: 600, TimeoutDuration: 1500 * time.Millisecond}, Key: "route", MaxKeys: 1},
		},
		DefaultPolicyRef: "fast",
		URLs: []ratelimiter.URLRule{
			{Methods: []string{"GET", "POST"}, URL: ratelimiter.URLMatch{Exact: "/admin"}, PolicyRef: "strict"},
			{URL: ratelimiter.URLMatch{Prefix: "/api/"}, PolicyRef: "routes"},
			{URL: ratelimiter.URLMatch{Regex: `^/pets/\d+$`}},
		},
	}
	filtertest.RoundTrip(t, ratelimiter.Kind, spec)
}

// The spec of the package documentation, verbatim, builds.
func TestDocumentedSpecBuilds(t *testing.T) {
	filtertest.New(t, ratelimiter.Kind, `
kind: RateLimiter
name: limiter
policies:
  - name: fast
    limitRefreshPeriod: 10ms
    limitForPeriod: 50
    timeoutDuration: 100ms
    burst: 100
    key: ""
    maxKeys: 10000
defaultPolicyRef: fast
urls:
  - methods: [GET, POST]
    url:
      exact: /admin
    policyRef: fast
  - url:
      prefix: /api/
    policyRef: fast
  - url:
      regex: ^/pets/\d+$
    policyRef: fast
`)
}

// An Easegress v2 RateLimiter spec (no burst, key or maxKeys) builds.
func TestEasegressSpecBuilds(t *testing.T) {
	h, _ := newFiltered(t, `
kind: RateLimiter
name: rate-limiter
policies:
- name: policy-example
  timeoutDuration: 100ms
  limitRefreshPeriod: 10ms
  limitForPeriod: 50
defaultPolicyRef: policy-example
urls:
- methods: []
  url:
    exact: /pipeline
    prefix: ""
    regex: ""
  policyRef: policy-example
`)
	if !admitted(t, h, request("GET", "/pipeline", "")) {
		t.Error("rejected the first request")
	}
}

func TestNewChecksSpec(t *testing.T) {
	if _, err := ratelimiter.New(pipeline.Env{}, &ratelimiter.Spec{}); !errors.Is(err, ratelimiter.ErrInvalidSpec) {
		t.Errorf("New with no policies: %v", err)
	}
	p := ratelimiter.Policy{Name: "p"}
	if _, err := ratelimiter.New(pipeline.Env{}, &ratelimiter.Spec{Policies: []ratelimiter.Policy{p}}); err == nil {
		t.Error("New accepted a policy without rate fields: Go callers must start from SetDefaults")
	}
	p.SetDefaults()
	l, err := ratelimiter.New(pipeline.Env{}, &ratelimiter.Spec{Policies: []ratelimiter.Policy{p}, DefaultPolicyRef: "p"})
	if err != nil {
		t.Fatal(err)
	}
	c := pipeline.NewContext(httptest.NewRequest("GET", "/", nil))
	if res := l.Handle(c); res != pipeline.Continue {
		t.Errorf("Handle with a nil Env clock: %q", res)
	}
}
