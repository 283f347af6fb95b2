package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// threeBackends starts three real backends answering "a", "b" and "c".
func threeBackends(t *testing.T) (urls []string, name map[string]string) {
	t.Helper()
	name = map[string]string{}
	for _, n := range []string{"a", "b", "c"} {
		b := filtertest.NewBackend(t, named(n))
		urls = append(urls, b.URL)
		name[b.URL] = n
	}
	return urls, name
}

func poolOf(urls []string, lb string) string {
	s := "pools:\n- servers:\n"
	for _, u := range urls {
		s += "  - url: " + u + "\n"
	}
	return s + "  loadBalance:\n" + lb
}

func lbGet(t *testing.T, h *filtertest.Harness, remote string, cookies ...string) *filtertest.Outcome {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if remote != "" {
		r.RemoteAddr = remote
	}
	for _, c := range cookies {
		r.Header.Add("Cookie", c)
	}
	out := h.Do(r)
	if out.Result != pipeline.Continue || out.Response.StatusCode != http.StatusOK {
		t.Fatalf("result %q, status %d", out.Result, out.Response.StatusCode)
	}
	return out
}

// TestIPHashSticksThroughProxy sends 30 clients, 5 requests each, through
// Proxy.Handle to three real backends: each client always reaches the same
// backend, and the clients spread over all three.
func TestIPHashSticksThroughProxy(t *testing.T) {
	t.Parallel()
	urls, _ := threeBackends(t)
	h := filtertest.New(t, proxy.Kind, poolOf(urls, "    policy: ipHash\n"))
	used := map[string]int{}
	for c := range 30 {
		ip := fmt.Sprintf("198.51.100.%d", c+1)
		var first string
		for i := range 5 {
			body := lbGet(t, h, fmt.Sprintf("%s:%d", ip, 40000+i)).Body
			if i == 0 {
				first = body
				used[body]++
			} else if body != first {
				t.Fatalf("client %s went to %s, then to %s", ip, first, body)
			}
		}
	}
	t.Logf("30 clients per backend: %v", used)
	if len(used) != 3 {
		t.Errorf("clients reached %v, want all three backends", used)
	}
}

var lbCookie = regexp.MustCompile(`^EG_SESSION_STICKY=([0-9a-f]+); Path=/; Max-Age=(\d+); HttpOnly$`)

// TestDurationBasedSticky: the first response sets a cookie naming its
// server (a hash, not the URL); requests carrying it go to that server and
// get no new cookie; once that server leaves the pool the cookie is
// ignored and replaced.
func TestDurationBasedSticky(t *testing.T) {
	t.Parallel()
	urls, _ := threeBackends(t)
	h := filtertest.New(t, proxy.Kind, poolOf(urls, "    stickySession: {mode: DurationBased, lbCookieExpire: 30m}\n"))
	out := lbGet(t, h, "")
	sc := out.Response.Header.Values("Set-Cookie")
	if len(sc) != 1 || !lbCookie.MatchString(sc[0]) {
		t.Fatalf("Set-Cookie %q", sc)
	}
	m := lbCookie.FindStringSubmatch(sc[0])
	if m[2] != "1800" {
		t.Errorf("Max-Age %s, want 1800", m[2])
	}
	for _, u := range urls {
		if strings.Contains(sc[0], strings.TrimPrefix(u, "http://")) {
			t.Errorf("cookie %q shows the server's address", sc[0])
		}
	}
	cookie := "EG_SESSION_STICKY=" + m[1]
	server := out.Body
	for range 6 { // round robin would visit all three
		out := lbGet(t, h, "", "theme=dark; "+cookie)
		if out.Body != server {
			t.Fatalf("a request with %s went to %s, not %s", cookie, out.Body, server)
		}
		if sc := out.Response.Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("a request with a valid cookie got Set-Cookie %q", sc)
		}
	}

	// The server leaves the pool: the cookie falls back to the policy.
	var rest []string
	for _, u := range urls {
		if body := lbGet(t, filtertest.New(t, proxy.Kind, oneServer(u)), "").Body; body != server {
			rest = append(rest, u)
		}
	}
	h2 := filtertest.New(t, proxy.Kind, poolOf(rest, "    stickySession: {mode: DurationBased}\n"))
	out = lbGet(t, h2, "", cookie)
	if out.Body == server {
		t.Fatalf("the removed server %s answered", server)
	}
	sc = out.Response.Header.Values("Set-Cookie")
	if len(sc) != 1 || !lbCookie.MatchString(sc[0]) || strings.Contains(sc[0], m[1]) {
		t.Fatalf("Set-Cookie after fallback %q", sc)
	}
	if m := lbCookie.FindStringSubmatch(sc[0]); m[2] != "7200" {
		t.Errorf("default Max-Age %s, want 7200", m[2])
	}
}

// TestApplicationBasedSticky: a response that sets the application's
// cookie gets the load balancer's too; requests with both stick to it.
func TestApplicationBasedSticky(t *testing.T) {
	t.Parallel()
	var urls []string
	for _, n := range []string{"a", "b", "c"} {
		b := filtertest.NewBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/login" {
				http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: "session-" + n})
			}
			fmt.Fprint(w, n)
		}))
		urls = append(urls, b.URL)
	}
	h := filtertest.New(t, proxy.Kind, poolOf(urls, "    policy: roundRobin\n    stickySession: {mode: ApplicationBased, appCookieName: JSESSIONID, lbCookieName: LB}\n"))
	if sc := lbGet(t, h, "").Response.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("a response without the application's cookie got %q", sc)
	}
	out := h.Do(httptest.NewRequest(http.MethodGet, "/login", nil))
	var appCookie, lb string
	for _, c := range out.Response.Cookies() {
		switch c.Name {
		case "JSESSIONID":
			appCookie = c.Value
		case "LB":
			lb = c.Value
		}
	}
	if appCookie == "" || lb == "" {
		t.Fatalf("login response cookies %q", out.Response.Header.Values("Set-Cookie"))
	}
	for range 6 {
		if got := lbGet(t, h, "", "JSESSIONID="+appCookie+"; LB="+lb).Body; got != out.Body {
			t.Fatalf("session of %s went to %s", out.Body, got)
		}
	}
	// Without the load balancer's cookie the application cookie's hash
	// decides, the same way each time.
	first := lbGet(t, h, "", "JSESSIONID=other").Body
	for range 5 {
		if got := lbGet(t, h, "", "JSESSIONID=other").Body; got != first {
			t.Fatalf("JSESSIONID=other went to %s, then %s", first, got)
		}
	}
}

// TestCookieConsistentHash: each value of the application's cookie goes
// to one server; requests without it follow the policy.
func TestCookieConsistentHash(t *testing.T) {
	t.Parallel()
	urls, _ := threeBackends(t)
	h := filtertest.New(t, proxy.Kind, poolOf(urls, "    stickySession: {mode: CookieConsistentHash, appCookieName: sid}\n    hashing: ring\n"))
	used := map[string]bool{}
	for i := range 20 {
		cookie := fmt.Sprintf("sid=user%d", i)
		first := lbGet(t, h, "", cookie).Body
		used[first] = true
		for range 3 {
			if got := lbGet(t, h, "", cookie).Body; got != first {
				t.Fatalf("%s went to %s, then %s", cookie, first, got)
			}
		}
		if sc := lbGet(t, h, "", cookie).Response.Header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("CookieConsistentHash set %q", sc)
		}
	}
	if len(used) < 2 {
		t.Errorf("20 sessions all went to %v", used)
	}
	var seq string
	for range 3 {
		seq += lbGet(t, h, "").Body
	}
	if seq != "abc" {
		t.Errorf("requests without the cookie went to %q, want round robin abc", seq)
	}
}

// TestLoadBalancePoliciesThroughProxy builds each remaining policy from
// YAML (with a fake clock for ewma) and serves requests through Handle.
func TestLoadBalancePoliciesThroughProxy(t *testing.T) {
	t.Parallel()
	urls, _ := threeBackends(t)
	for _, lb := range []string{
		"    policy: random\n",
		"    policy: weightedRandom\n",
		"    policy: leastRequest\n",
		"    policy: ewma\n    ewmaDecay: 1s\n",
		"    policy: headerHash\n    headerHashKey: X-User\n    hashing: modulo\n",
	} {
		h := filtertest.New(t, proxy.Kind, poolOf(urls, lb), filtertest.WithClock(filtertest.NewFakeClock(time.Unix(0, 0))))
		for range 20 {
			lbGet(t, h, "")
		}
	}
}

func TestLoadBalanceYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	for _, lb := range []proxy.LoadBalanceSpec{
		{Policy: proxy.PolicyHeaderHash, HeaderHashKey: "X-User", Hashing: proxy.HashingRing},
		{Policy: proxy.PolicyEWMA, EWMADecay: 3 * time.Second},
		{Policy: proxy.PolicyLeastRequest, StickySession: &proxy.StickySessionSpec{
			Mode: proxy.StickyApplicationBased, AppCookieName: "JSESSIONID", LBCookieName: "LB", LBCookieExpire: time.Hour,
		}},
		{Policy: proxy.PolicyIPHash, Hashing: proxy.HashingMaglev},
		{Policy: proxy.PolicyWeightedRandom},
	} {
		spec := proxy.Spec{Pools: []proxy.PoolSpec{{
			Servers:     []proxy.ServerSpec{{URL: "http://127.0.0.1:9095", Weight: 2}, {URL: "http://127.0.0.1:9096", Weight: 1}},
			LoadBalance: lb,
		}}}
		filtertest.RoundTrip(t, proxy.Kind, spec)
	}
}

func TestLoadBalanceBadSpecs(t *testing.T) {
	t.Parallel()
	const head = "pools:\n- servers:\n  - url: http://a\n  loadBalance:\n"
	for _, tt := range []struct {
		lb, field, msg string
		line           int
	}{
		{"    policy: leastConn\n", "policy", `unknown load-balancing policy "leastConn" \(want one of roundRobin, random, weightedRandom, ipHash, headerHash, cookieHash, leastRequest, ewma\)`, 5},
		{"    policy: headerHash\n", "headerHashKey", "required with policy headerHash", 4},
		{"    policy: headerHash\n    headerHashKey: \"X User\"\n", "headerHashKey", "not a header name", 6},
		{"    policy: ipHash\n    headerHashKey: X-User\n", "headerHashKey", "only allowed with policy headerHash", 6},
		{"    policy: ipHash\n    hashing: rendezvous\n", "hashing", `unknown hashing "rendezvous"`, 6},
		{"    policy: random\n    hashing: ring\n", "hashing", "only allowed with policy ipHash, headerHash or cookieHash", 6},
		{"    policy: cookieHash\n", "cookieName", "required with policy cookieHash", 4},
		{"    policy: cookieHash\n    cookieName: \"a;b\"\n", "cookieName", "not a cookie name", 6},
		{"    policy: ipHash\n    cookieName: sid\n", "cookieName", "only allowed with policy cookieHash", 6},
		{"    policy: ewma\n    ewmaDecay: -1s\n", "ewmaDecay", "must not be negative", 6},
		{"    policy: roundRobin\n    ewmaDecay: 1s\n", "ewmaDecay", "only allowed with policy ewma", 6},
		{"    stickySession: {mode: Forever}\n", "stickySession.mode", `unknown mode "Forever" \(want one of CookieConsistentHash, DurationBased, ApplicationBased\)`, 5},
		{"    stickySession: {lbCookieName: X}\n", "stickySession.mode", "required", 5},
		{"    stickySession: {mode: ApplicationBased}\n", "stickySession.appCookieName", "required with mode ApplicationBased", 5},
		{"    stickySession: {mode: DurationBased, lbCookieName: \"a;b\"}\n", "stickySession.lbCookieName", "not a cookie name", 5},
		{"    stickySession: {mode: DurationBased, lbCookieExpire: -1m}\n", "stickySession.lbCookieExpire", "must not be negative", 5},
	} {
		t.Run(tt.field, func(t *testing.T) {
			pattern := fmt.Sprintf(`line %d: field "pools\[0\]\.loadBalance\.%s": .*%s`, tt.line, regexp.QuoteMeta(tt.field), tt.msg)
			filtertest.ExpectBuildError(t, proxy.Kind, head+tt.lb, pattern)
		})
	}
}

// TestCookieHash: each value of the cookie cookieName goes to one server,
// and the values spread over the pool; requests without it are taken in
// turn.
func TestCookieHash(t *testing.T) {
	t.Parallel()
	urls, _ := threeBackends(t)
	h := filtertest.New(t, proxy.Kind, poolOf(urls, "    policy: cookieHash\n    cookieName: uid\n"))
	used := map[string]bool{}
	for i := range 30 {
		cookie := fmt.Sprintf("theme=dark; uid=user%d", i)
		first := lbGet(t, h, "", cookie).Body
		used[first] = true
		for range 3 {
			if got := lbGet(t, h, "", cookie).Body; got != first {
				t.Fatalf("%s went to %s, then %s", cookie, first, got)
			}
		}
	}
	if len(used) != 3 {
		t.Errorf("cookie values reached %v, want all three backends", used)
	}
	turns := map[string]bool{}
	for range 3 {
		turns[lbGet(t, h, "", "theme=dark").Body] = true
	}
	if len(turns) != 3 {
		t.Errorf("requests without the cookie reached %v, want each backend in turn", turns)
	}
}

// TestIPHashUsesTheGatesClientIP: behind trusted proxies every request
// arrives from a proxy's address; ipHash must hash the real client IP the
// gate put in the request's context, not the peer.
func TestIPHashUsesTheGatesClientIP(t *testing.T) {
	t.Parallel()
	urls, _ := threeBackends(t)
	h := filtertest.New(t, proxy.Kind, poolOf(urls, "    policy: ipHash\n"))
	used := map[string]bool{}
	for c := range 30 {
		client := netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", c+1))
		var first string
		for i := range 3 {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = fmt.Sprintf("10.0.0.%d:4000", i+1) // a different proxy each time
			r = pipeline.WithRequestInfo(r, &pipeline.RequestInfo{ClientIP: client})
			out := h.Do(r)
			if i == 0 {
				first = out.Body
				used[first] = true
			} else if out.Body != first {
				t.Fatalf("client %s went to %s, then to %s", client, first, out.Body)
			}
		}
	}
	if len(used) != 3 {
		t.Errorf("clients reached %v, want all three backends", used)
	}
}
