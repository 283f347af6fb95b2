package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// These tests drive the load balancers directly, with servers that are
// never contacted: what they check (choices, counters, tables) involves no
// I/O. The end-to-end tests through Proxy.Handle are in loadbalance_test.go.

func testServers(t testing.TB, weights ...int) []*Server {
	t.Helper()
	var ss []*Server
	for i, w := range weights {
		s, err := newServer(ServerSpec{URL: fmt.Sprintf("http://10.0.0.%d:8080", i+1), Weight: w})
		if err != nil {
			t.Fatal(err)
		}
		s.idx = i // as newPool numbers them
		ss = append(ss, s)
	}
	return ss
}

func ones(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

func indexOf(servers []*Server, s *Server) int {
	for i, x := range servers {
		if x == s {
			return i
		}
	}
	return -1
}

// chiSquare returns Pearson's statistic of counts against the expected
// shares (which sum to 1) of total.
func chiSquare(counts []int, shares []float64, total int) float64 {
	var x2 float64
	for i, c := range counts {
		e := shares[i] * float64(total)
		x2 += (float64(c) - e) * (float64(c) - e) / e
	}
	return x2
}

// chiBound3 is the χ² value with 3 degrees of freedom exceeded with
// probability 1e-6: a correct policy fails the test once in a million runs.
const chiBound3 = 30.7

func TestRandomDistribution(t *testing.T) {
	t.Parallel()
	const picks = 10000
	for _, tt := range []struct {
		policy  string
		weights []int
		shares  []float64
	}{
		{PolicyRandom, []int{1, 2, 3, 4}, []float64{.25, .25, .25, .25}},
		{PolicyWeightedRandom, []int{1, 2, 3, 4}, []float64{.1, .2, .3, .4}},
		{PolicyWeightedRandom, []int{0, 1, 0, 3}, []float64{0, .25, 0, .75}},
		{PolicyWeightedRandom, []int{0, 0, 0, 0}, []float64{.25, .25, .25, .25}},
	} {
		t.Run(fmt.Sprint(tt.policy, tt.weights), func(t *testing.T) {
			servers := testServers(t, tt.weights...)
			lb := newLoadBalancer(&LoadBalanceSpec{Policy: tt.policy}, servers, nil)
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			counts := make([]int, len(servers))
			for range picks {
				counts[indexOf(servers, lb.Choose(r))]++
			}
			var counts2 []int
			var shares2 []float64
			for i, sh := range tt.shares {
				if sh == 0 {
					if counts[i] != 0 {
						t.Errorf("server %d of weight 0 picked %d times", i, counts[i])
					}
					continue
				}
				counts2, shares2 = append(counts2, counts[i]), append(shares2, sh)
			}
			x2 := chiSquare(counts2, shares2, picks)
			t.Logf("counts %v, χ² %.2f", counts, x2)
			if x2 > chiBound3 {
				t.Errorf("counts %v for shares %v: χ² %.1f > %.1f", counts, tt.shares, x2, chiBound3)
			}
		})
	}
}

func TestHashDeterminismAndSpread(t *testing.T) {
	t.Parallel()
	for _, hashing := range []string{HashingMaglev, HashingRing, HashingModulo} {
		t.Run(hashing, func(t *testing.T) {
			servers := testServers(t, ones(4)...)
			other := testServers(t, ones(4)...) // another gateway with the same servers
			ip := newLoadBalancer(&LoadBalanceSpec{Policy: PolicyIPHash, Hashing: hashing}, servers, nil)
			ip2 := newLoadBalancer(&LoadBalanceSpec{Policy: PolicyIPHash, Hashing: hashing}, other, nil)
			hh := newLoadBalancer(&LoadBalanceSpec{Policy: PolicyHeaderHash, HeaderHashKey: "x-user", Hashing: hashing}, servers, nil)
			counts := make([]int, 4)
			const clients = 10000
			for i := range clients {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:%d", i>>16, (i>>8)&255, i&255, 1000+i%7)
				s := ip.Choose(r)
				counts[indexOf(servers, s)]++
				r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:%d", i>>16, (i>>8)&255, i&255, 2000)
				if again := ip.Choose(r); again != s {
					t.Fatalf("ipHash sent %s to %s, then from another port to %s", r.RemoteAddr, s.url, again.url)
				}
				if s2 := ip2.Choose(r); indexOf(other, s2) != indexOf(servers, s) {
					t.Fatalf("two gateways send %s to different servers", r.RemoteAddr)
				}
				r.Header.Set("X-User", "user-"+strconv.Itoa(i))
				a, b := hh.Choose(r), hh.Choose(r)
				if a != b {
					t.Fatalf("headerHash sent X-User %s to %s, then %s", r.Header.Get("X-User"), a.url, b.url)
				}
			}
			x2 := chiSquare(counts, []float64{.25, .25, .25, .25}, clients)
			t.Logf("ipHash over %d client IPs: %v, χ² %.2f", clients, counts, x2)
			if hashing == HashingRing {
				// A ring's arcs are uneven by design (about ±1/√160 = 8% per
				// server), so the keys are not spread like random picks.
				for i, c := range counts {
					if c < clients/4*8/10 || c > clients/4*12/10 {
						t.Errorf("server %d got %d of %d client IPs, beyond ±20%% of an even share", i, c, clients)
					}
				}
			} else if x2 > chiBound3 {
				t.Errorf("client IPs spread %v: χ² %.1f > %.1f", counts, x2, chiBound3)
			}
		})
	}
}

func TestHeaderHashWithoutHeaderTakesTurns(t *testing.T) {
	t.Parallel()
	servers := testServers(t, ones(3)...)
	lb := newLoadBalancer(&LoadBalanceSpec{Policy: PolicyHeaderHash, HeaderHashKey: "X-User"}, servers, nil)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for i := range 6 {
		if got := lb.Choose(r); got != servers[i%3] {
			t.Fatalf("request %d without the header went to %s, want %s", i, got.url, servers[i%3].url)
		}
	}
}

func TestMaglevTable(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3, 10, 700} {
		servers := testServers(t, ones(n)...)
		mg := newMaglev(servers, maglevSize(n))
		m := len(mg.table)
		if !isPrime(m) || m < 100*n || (n <= 655 && m != DefaultMaglevTableSize) {
			t.Errorf("%d servers: table size %d", n, m)
		}
		counts := make([]int, n)
		for _, e := range mg.table {
			counts[e]++
		}
		for i, c := range counts {
			if c < m/n || c > m/n+1 {
				t.Errorf("%d servers: server %d has %d entries, want %d or %d", n, i, c, m/n, m/n+1)
			}
		}
	}
}

// movement maps keys through a table before and after a change of the
// servers and counts the keys that moved, and among them those that moved
// between servers present both times.
func movement(before, after hashTable, keys int, gone, added *Server) (moved, between int) {
	for i := range keys {
		h := hashString("key-" + strconv.Itoa(i))
		a, b := before.lookup(h), after.lookup(h)
		if a.url == b.url {
			continue
		}
		moved++
		if a != gone && b != added {
			between++
		}
	}
	return moved, between
}

// TestConsistentHashMovement: removing one of N=10 servers moves about 1/N
// of the keys with Maglev and ring hashing (at most 1.5/N), and adding an
// 11th moves at most 1/11 + 10%; modulo hashing, for contrast, moves most.
// The ring moves no key between surviving servers; Maglev moves a few.
func TestConsistentHashMovement(t *testing.T) {
	t.Parallel()
	const n, keys = 10, 100000
	all := testServers(t, ones(n+1)...)
	servers := all[:n]
	for _, tt := range []struct {
		hashing            string
		maxMoved, maxAdded float64 // shares of keys
		maxBetween         float64
	}{
		{HashingMaglev, 1.5 / n, 1.1 / (n + 1), 0.02},
		{HashingRing, 1.5 / n, 1.1 / (n + 1), 0},
		{HashingModulo, 1, 1, 1},
	} {
		t.Run(tt.hashing, func(t *testing.T) {
			before := newHashTable(tt.hashing, servers)
			worst, worstBetween := 0.0, 0.0
			for gone := range n {
				rest := append(append([]*Server{}, servers[:gone]...), servers[gone+1:]...)
				moved, between := movement(before, newHashTable(tt.hashing, rest), keys, servers[gone], nil)
				worst = max(worst, float64(moved)/keys)
				worstBetween = max(worstBetween, float64(between)/keys)
			}
			moved, between := movement(before, newHashTable(tt.hashing, all), keys, nil, all[n])
			added := float64(moved) / keys
			t.Logf("%s, %d servers, %d keys: removing one moves at most %.2f%% (%.2f%% between survivors); adding one moves %.2f%% (%.2f%% between old servers)",
				tt.hashing, n, keys, 100*worst, 100*worstBetween, 100*added, 100*float64(between)/keys)
			if worst > tt.maxMoved || worstBetween > tt.maxBetween {
				t.Errorf("removing a server moved %.2f%% of keys (bound %.2f%%), %.2f%% between survivors (bound %.2f%%)", 100*worst, 100*tt.maxMoved, 100*worstBetween, 100*tt.maxBetween)
			}
			if added > tt.maxAdded || float64(between)/keys > tt.maxBetween {
				t.Errorf("adding a server moved %.2f%% of keys (bound %.2f%%), %.2f%% between old servers", 100*added, 100*tt.maxAdded, 100*float64(between)/keys)
			}
			if tt.hashing == HashingModulo && worst < 0.5 {
				t.Errorf("modulo moved only %.2f%% of keys; the contrast is gone", 100*worst)
			}
		})
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)

	// Two servers: both are always compared, so the idle one always wins.
	servers := testServers(t, 1, 1)
	lb := newLoadBalancer(&LoadBalanceSpec{Policy: PolicyLeastRequest}, servers, nil).(FeedbackBalancer)
	servers[0].stats.inflight.Store(3)
	for range 1000 {
		s := lb.Choose(r)
		if s != servers[1] {
			t.Fatalf("chose the busy server")
		}
		lb.Done(s, time.Millisecond, false)
	}
	servers[0].stats.inflight.Store(0)

	// Three servers, one idle: it wins every pair it is in (2/3 of them).
	servers = testServers(t, 1, 1, 1)
	lb = newLoadBalancer(&LoadBalanceSpec{Policy: PolicyLeastRequest}, servers, nil).(FeedbackBalancer)
	servers[0].stats.inflight.Store(5)
	servers[2].stats.inflight.Store(5)
	idle := 0
	for range 3000 {
		s := lb.Choose(r)
		if s == servers[1] {
			idle++
		}
		lb.Done(s, time.Millisecond, false)
	}
	t.Logf("idle server chosen %d of 3000 times", idle)
	if idle < 1800 {
		t.Errorf("idle server chosen %d of 3000 times, want about 2000", idle)
	}

	// Choices without Done spread the load evenly, and Done counts it out.
	servers = testServers(t, 1, 1, 1)
	lb = newLoadBalancer(&LoadBalanceSpec{Policy: PolicyLeastRequest}, servers, nil).(FeedbackBalancer)
	var chosen []*Server
	for range 300 {
		chosen = append(chosen, lb.Choose(r))
	}
	for _, s := range servers {
		if n := s.stats.inflight.Load(); n < 90 || n > 110 {
			t.Errorf("%s has %d in flight of 300", s.url, n)
		}
	}
	for _, s := range chosen {
		lb.Done(s, 0, true)
	}
	for _, s := range servers {
		if n := s.stats.inflight.Load(); n != 0 {
			t.Errorf("%s has %d in flight after every Done", s.url, n)
		}
	}
}

// TestEWMAPrefersFast feeds the ewma policy latencies on a fake clock: a
// fast and a slow server. Once both are sampled the fast one takes every
// request; after the slow one has had no sample for several decay
// constants it is tried again.
func TestEWMAPrefersFast(t *testing.T) {
	t.Parallel()
	clk := filtertest.NewFakeClock(time.Unix(1e9, 0))
	servers := testServers(t, 1, 1)
	fast, slow := servers[0], servers[1]
	latency := map[*Server]time.Duration{fast: 10 * time.Millisecond, slow: 200 * time.Millisecond}
	lb := newLoadBalancer(&LoadBalanceSpec{Policy: PolicyEWMA, EWMADecay: time.Second}, servers, clk).(FeedbackBalancer)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	send := func() *Server {
		s := lb.Choose(r)
		clk.Advance(latency[s])
		lb.Done(s, latency[s], false)
		return s
	}
	counts := map[*Server]int{}
	for range 100 {
		counts[send()]++
	}
	if counts[slow] == 0 {
		t.Fatal("the slow server was never sampled")
	}
	counts = map[*Server]int{}
	for range 100 {
		counts[send()]++
	}
	t.Logf("after warm-up: fast %d, slow %d of 100", counts[fast], counts[slow])
	if counts[fast] < 95 {
		t.Errorf("fast server chosen %d of 100 times", counts[fast])
	}

	// In-flight attempts count: the fast server with 30 in flight costs
	// more than the idle slow one.
	fast.stats.inflight.Add(30)
	if s := lb.Choose(r); s != slow {
		t.Errorf("chose the fast server with 30 attempts in flight over the idle slow one")
	} else {
		lb.Done(s, latency[s], false)
	}
	fast.stats.inflight.Add(-30)

	// A failure counts as at least failurePenalty.
	lb.Done(lb.Choose(r), time.Millisecond, true) // fast fails fast
	if s := lb.Choose(r); s != slow {
		t.Errorf("a fast failure made the fast server look fast")
	} else {
		lb.Done(s, latency[s], false)
	}

	// Without samples the averages decay: after 10 decay constants the
	// slow server is cheaper than the fast one's latest sample.
	clk.Advance(10 * time.Second)
	lb.Done(fast, 50*time.Millisecond, false)
	fast.stats.inflight.Add(1) // Done above was not paired with a Choose
	if s := lb.Choose(r); s != slow {
		t.Errorf("the slow server was not tried again after its average decayed")
	} else {
		lb.Done(s, latency[s], false)
	}
	for _, s := range servers {
		if n := s.stats.inflight.Load(); n != 0 {
			t.Errorf("%s has %d in flight", s.url, n)
		}
	}
}

func TestCookieValue(t *testing.T) {
	t.Parallel()
	h := http.Header{"Cookie": {"xa=0; a=1 ;  EG_SESSION_STICKY=abc", `b="q"`}}
	for name, want := range map[string]string{"a": "1", "EG_SESSION_STICKY": "abc", "b": "q", "c": ""} {
		if got, ok := cookieValue(h, name); got != want || ok != (want != "") {
			t.Errorf("cookieValue(%q) = %q, %v", name, got, ok)
		}
	}
}

// lbCases are a load balancer of each policy and a request for it.
func lbCases(tb testing.TB) []struct {
	name string
	lb   LoadBalancer
	r    *http.Request
} {
	servers := testServers(tb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	r.Header.Set("X-User", "alice")
	r.Header.Set("Cookie", "theme=dark; JSESSIONID=s3cr3t; EG_SESSION_STICKY="+servers[3].id)
	mk := func(spec LoadBalanceSpec) LoadBalancer { return newLoadBalancer(&spec, servers, nil) }
	return []struct {
		name string
		lb   LoadBalancer
		r    *http.Request
	}{
		{"roundRobin", mk(LoadBalanceSpec{}), r},
		{"random", mk(LoadBalanceSpec{Policy: PolicyRandom}), r},
		{"weightedRandom", mk(LoadBalanceSpec{Policy: PolicyWeightedRandom}), r},
		{"ipHash/maglev", mk(LoadBalanceSpec{Policy: PolicyIPHash}), r},
		{"ipHash/ring", mk(LoadBalanceSpec{Policy: PolicyIPHash, Hashing: HashingRing}), r},
		{"ipHash/modulo", mk(LoadBalanceSpec{Policy: PolicyIPHash, Hashing: HashingModulo}), r},
		{"headerHash", mk(LoadBalanceSpec{Policy: PolicyHeaderHash, HeaderHashKey: "X-User"}), r},
		{"leastRequest", mk(LoadBalanceSpec{Policy: PolicyLeastRequest}), r},
		{"ewma", mk(LoadBalanceSpec{Policy: PolicyEWMA}), r},
		{"sticky/DurationBased", mk(LoadBalanceSpec{StickySession: &StickySessionSpec{Mode: StickyDurationBased}}), r},
		{"sticky/ApplicationBased", mk(LoadBalanceSpec{StickySession: &StickySessionSpec{Mode: StickyApplicationBased, AppCookieName: "JSESSIONID"}}), r},
		{"sticky/CookieConsistentHash", mk(LoadBalanceSpec{StickySession: &StickySessionSpec{Mode: StickyCookieConsistentHash, AppCookieName: "JSESSIONID"}}), r},
	}
}

// choose is one pick with the feedback the pool would give.
func choose(lb LoadBalancer, r *http.Request) {
	s := lb.Choose(r)
	if fb, ok := lb.(FeedbackBalancer); ok {
		fb.Done(s, time.Millisecond, false)
	}
}

func TestChooseDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, c := range lbCases(t) {
		if n := testing.AllocsPerRun(100, func() { choose(c.lb, c.r) }); n != 0 {
			t.Errorf("%s: %.1f allocations per Choose", c.name, n)
		}
	}
}

func BenchmarkChoose(b *testing.B) {
	for _, c := range lbCases(b) {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					choose(c.lb, c.r)
				}
			})
		})
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"192.0.2.1:1234":      "192.0.2.1",
		"[2001:db8::1]:1234":  "2001:db8::1",
		"2001:db8::1":         "2001:db8::1",
		"192.0.2.1":           "192.0.2.1",
		"":                    "",
		"[2001:db8::1":        "[2001:db8::1",
		"unix-socket-address": "unix-socket-address",
	} {
		if got := clientIP(&http.Request{RemoteAddr: addr}); got != want {
			t.Errorf("clientIP(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestInheritKeepsInflight: attempts of the old generation stay counted in
// the new one, and their Done on the old generation counts them out.
func TestInheritKeepsInflight(t *testing.T) {
	t.Parallel()
	spec := func() *Spec {
		return &Spec{Pools: []PoolSpec{{
			Servers:     []ServerSpec{{URL: "http://10.0.0.1"}, {URL: "http://10.0.0.2"}},
			LoadBalance: LoadBalanceSpec{Policy: PolicyLeastRequest},
		}}}
	}
	old, err := New(pipeline.Env{}, spec())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	busy := old.pools[0].lb.Choose(r)
	nu, err := New(pipeline.Env{}, spec())
	if err != nil {
		t.Fatal(err)
	}
	defer nu.Close()
	if err := nu.Inherit(old); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		s := nu.pools[0].lb.Choose(r)
		if s.url == busy.url {
			t.Fatalf("the new generation chose %s, busy in the old one", s.url)
		}
		nu.pools[0].feedback.Done(s, 0, false)
	}
	old.pools[0].feedback.Done(busy, 0, false)
	for _, s := range nu.pools[0].servers {
		if n := s.stats.inflight.Load(); n != 0 {
			t.Errorf("%s: %d in flight", s.url, n)
		}
	}
}
