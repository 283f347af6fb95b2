package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// healthCases are load balancers wrapped for health, over ten servers of
// which the first five are down (active checks) or ejected (until an hour
// from now), so that every choice of a down server is replaced.
func healthCases(tb testing.TB) ([]*Server, []struct {
	name string
	lb   LoadBalancer
}) {
	servers := testServers(tb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	clk := filtertest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for i, s := range servers[:5] {
		if i%2 == 0 {
			s.stats.health.Store(healthDown)
		} else {
			s.stats.health.Store(uint64(clk.Now().Add(time.Hour).UnixNano()) &^ healthDown)
		}
	}
	mk := func(spec LoadBalanceSpec) LoadBalancer {
		return newHealthAware(newLoadBalancer(&spec, servers, clk), &spec, servers, clk)
	}
	return servers, []struct {
		name string
		lb   LoadBalancer
	}{
		{"roundRobin", mk(LoadBalanceSpec{})},
		{"weightedRandom", mk(LoadBalanceSpec{Policy: PolicyWeightedRandom})},
		{"ipHash", mk(LoadBalanceSpec{Policy: PolicyIPHash})},
		{"headerHash", mk(LoadBalanceSpec{Policy: PolicyHeaderHash, HeaderHashKey: "X-User"})},
		{"leastRequest", mk(LoadBalanceSpec{Policy: PolicyLeastRequest})},
		{"sticky/DurationBased", mk(LoadBalanceSpec{StickySession: &StickySessionSpec{Mode: StickyDurationBased}})},
	}
}

func healthRequest(user string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	r.Header.Set("X-User", user)
	return r
}

func TestHealthAwareSkipsAndDoesNotAllocate(t *testing.T) {
	servers, cases := healthCases(t)
	r := healthRequest("alice")
	for _, c := range cases {
		for i := range 200 {
			r.Header.Set("X-User", string(rune('a'+i%26)))
			if s := c.lb.Choose(r); s.idx < 5 {
				t.Fatalf("%s chose server %d, which is down", c.name, s.idx)
			}
		}
		if raceEnabled {
			continue
		}
		if n := testing.AllocsPerRun(100, func() { c.lb.Choose(r) }); n != 0 {
			t.Errorf("%s: %.1f allocations per Choose", c.name, n)
		}
	}
	for _, s := range servers {
		s.stats.inflight.Store(0)
	}
}

// TestHealthAwareMovesInflight: when leastRequest's choice is replaced,
// the attempt in flight is counted on the replacement, which the pool's
// Done then counts out.
func TestHealthAwareMovesInflight(t *testing.T) {
	servers, cases := healthCases(t)
	var lr LoadBalancer
	for _, c := range cases {
		if c.name == "leastRequest" {
			lr = c.lb
		}
	}
	base := lr.(*healthAware).base.(FeedbackBalancer)
	var chosen []*Server
	for range 100 {
		chosen = append(chosen, lr.Choose(healthRequest("x")))
	}
	var total int64
	for _, s := range servers {
		n := s.stats.inflight.Load()
		if s.idx < 5 && n != 0 {
			t.Errorf("server %d is down and has %d in flight", s.idx, n)
		}
		total += n
	}
	if total != 100 {
		t.Errorf("%d attempts in flight, want 100", total)
	}
	for _, s := range chosen {
		base.Done(s, time.Millisecond, false)
	}
	for _, s := range servers {
		if n := s.stats.inflight.Load(); n != 0 {
			t.Errorf("server %d: %d in flight after Done", s.idx, n)
		}
	}
}

func BenchmarkHealthAwareChoose(b *testing.B) {
	_, cases := healthCases(b)
	r := healthRequest("alice")
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.lb.Choose(r)
			}
		})
	}
}
