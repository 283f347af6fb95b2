package ratelimiter_test

import (
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/sluicegw/sluice/filters/ratelimiter"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// BenchmarkAdmit measures Handle for admitted requests under parallel
// load, on the real clock, with a rate no request exceeds. Each goroutine
// reuses one Context (an admitted request leaves it as it was), so the
// allocations reported are the filter's own. With url rules, the matching
// rule is the third, behind an exact and a regex rule.
func BenchmarkAdmit(b *testing.B) {
	const rules = `
urls:
  - {methods: [POST], url: {exact: /admin}, policyRef: p}
  - {url: {regex: '^/pets/\d+$'}, policyRef: p}
  - {methods: [GET, HEAD], url: {prefix: /api/}, policyRef: p}
`
	cases := []struct{ key, rules string }{
		{"", ""}, // no url rules: every request gets the default policy
		{"", rules},
		{"route", rules},
		{"clientIP", rules},
		{"header:X-Api-Key", rules},
	}
	for _, tc := range cases {
		key := tc.key
		name := fmt.Sprintf("key=%q", key)
		if tc.rules == "" {
			name += "/noRules"
		}
		b.Run(name, func(b *testing.B) {
			h := filtertest.New(b, ratelimiter.Kind, fmt.Sprintf(`
policies: [{name: p, key: %q, limitRefreshPeriod: 1s, limitForPeriod: 1000000000, burst: 1000000000, timeoutDuration: 0s}]
defaultPolicyRef: p
`, key)+tc.rules)
			f := h.Filter
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("GET", "/api/v1/users", nil)
				r.RemoteAddr = "192.0.2.7:40000"
				r.Header.Set("X-Api-Key", "key-123")
				c := pipeline.NewContext(r)
				for pb.Next() {
					if f.Handle(c) != pipeline.Continue {
						b.Fatal("rejected")
					}
				}
			})
		})
	}
}

// BenchmarkReject measures a rejection: the 429 response is built per
// request.
func BenchmarkReject(b *testing.B) {
	h := filtertest.New(b, ratelimiter.Kind, `
policies: [{name: p, limitRefreshPeriod: 1h, limitForPeriod: 1, burst: 1, timeoutDuration: 0s}]
defaultPolicyRef: p
`)
	h.Get("/")
	f := h.Filter
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("GET", "/", nil)
		for pb.Next() {
			c := pipeline.NewContext(r)
			if f.Handle(c) != ratelimiter.RateLimited {
				b.Fatal("admitted")
			}
		}
	})
}
