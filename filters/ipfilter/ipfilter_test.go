package ipfilter_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/filters/ipfilter"
	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

const spec = `
blockByDefault: true
allowIPs: [10.0.0.0/8, 2001:db8::/32, 192.168.1.7]
blockIPs: [10.66.0.0/16, "2001:db8:bad::/48"]
`

func TestHandle(t *testing.T) {
	h := filtertest.New(t, ipfilter.Kind, spec)
	tests := []struct {
		client string // set as the gate does; "" leaves only RemoteAddr
		remote string
		want   pipeline.Result
	}{
		{client: "10.1.2.3", want: pipeline.Continue},
		{client: "10.66.0.1", want: ipfilter.Blocked},
		{client: "192.168.1.7", want: pipeline.Continue},
		{client: "192.168.1.8", want: ipfilter.Blocked},
		{client: "::ffff:10.1.2.3", want: pipeline.Continue},
		{client: "::ffff:10.66.1.1", want: ipfilter.Blocked},
		{client: "2001:db8::1", want: pipeline.Continue},
		{client: "2001:db8:bad::1", want: ipfilter.Blocked},
		{client: "203.0.113.9", want: ipfilter.Blocked},
		{remote: "10.9.9.9:5000", want: pipeline.Continue},
		{remote: "[2001:db8::9]:443", want: pipeline.Continue},
		{remote: "203.0.113.9:5000", want: ipfilter.Blocked},
		{remote: "garbage", want: ipfilter.Blocked}, // unknown client, blockByDefault
	}
	for _, tt := range tests {
		t.Run(tt.client+tt.remote, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.RemoteAddr = "198.51.100.1:1234"
			if tt.remote != "" {
				req.RemoteAddr = tt.remote
			}
			// A forged header is never read by the filter itself.
			req.Header.Set("X-Forwarded-For", "10.1.2.3")
			if tt.client != "" {
				req = pipeline.WithRequestInfo(req, &pipeline.RequestInfo{ClientIP: netip.MustParseAddr(tt.client).Unmap()})
			}
			out := h.Do(req)
			if out.Result != tt.want {
				t.Fatalf("result %q, want %q", out.Result, tt.want)
			}
			if tt.want == ipfilter.Blocked && (out.Response.StatusCode != http.StatusForbidden || out.Body != "forbidden\n") {
				t.Errorf("response %d %q, want 403 forbidden", out.Response.StatusCode, out.Body)
			}
			if tt.want == pipeline.Continue && out.Response != nil {
				t.Errorf("an allowed request got a response")
			}
		})
	}
}

func TestAllowByDefault(t *testing.T) {
	h := filtertest.New(t, ipfilter.Kind, "blockIPs: [203.0.113.0/24]\nallowIPs: [203.0.113.200]")
	for addr, want := range map[string]pipeline.Result{
		"203.0.113.1:1":   ipfilter.Blocked,
		"203.0.113.200:1": pipeline.Continue,
		"198.51.100.1:1":  pipeline.Continue,
		"[::1]:1":         pipeline.Continue,
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = addr
		if got := h.Do(req).Result; got != want {
			t.Errorf("%s: result %q, want %q", addr, got, want)
		}
	}
}

func TestBadSpec(t *testing.T) {
	tests := []struct{ name, spec, want string }{
		{"bad allow entry", "allowIPs: [10.0.0.0/8, nope]", `^line 1: field "allowIPs\[1\]": "nope": not an IP address or CIDR prefix`},
		{"bad block entry", "blockIPs:\n  - 10.0.0.0/33", `^line 2: field "blockIPs\[0\]": .*not an IP address or CIDR prefix`},
		{"in both lists", "allowIPs: [10.0.0.0/8]\nblockIPs: [10.1.1.1/8]", `^line 2: field "blockIPs\[0\]": 10.0.0.0/8 is also allowIPs\[0\]`},
		{"does nothing", "{}", `field "allowIPs": set allowIPs, blockIPs or blockByDefault`},
		{"unknown field", "allowIps: [1.1.1.1]", `field "allowIps": unknown field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { filtertest.ExpectBuildError(t, ipfilter.Kind, tt.spec, tt.want) })
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	filtertest.RoundTrip(t, ipfilter.Kind, ipfilter.Spec{BlockByDefault: true, AllowIPs: []string{"10.0.0.0/8", "::1"}, BlockIPs: []string{"10.1.0.0/16"}})
}

// TestGateway runs the filter behind a real gate on loopback: a client
// that is not a trusted proxy cannot get past it with a forged
// X-Forwarded-For, and a trusted proxy's header is believed.
func TestGateway(t *testing.T) {
	const pipelineYAML = `
kind: Pipeline
name: api
flow:
  - filter: ips
    jumpIf: { blocked: END }
  - filter: backend
filters:
  - name: ips
    kind: IPFilter
    blockByDefault: true
    allowIPs: [203.0.113.7]
  - name: backend
    kind: Mock
    rules: [{ body: welcome }]
`
	serverYAML := func(trusted string) string {
		return `
kind: HTTPServer
name: server
port: 10080
trustedProxies: [` + trusted + `]
rules:
  - paths:
      - pathPrefix: /
        backend: api
`
	}
	g, err := sluice.New(sluice.WithoutBuiltinFilters(), sluice.WithFilterKinds(ipfilter.Kind, mock.Kind))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	apply := func(y string) {
		t.Helper()
		if err := g.ApplyYAML(context.Background(), strings.NewReader(y)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := func() (http.Handler, error) {
		apply(serverYAML("192.0.2.1") + "---\n" + pipelineYAML)
		return g.Handler("server")
	}()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	get := func(xff string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// The loopback peer is not trusted: its X-Forwarded-For is ignored.
	if code, body := get("203.0.113.7"); code != http.StatusForbidden || body != "forbidden\n" {
		t.Errorf("spoofed X-Forwarded-For from an untrusted peer: %d %q, want 403", code, body)
	}
	if code, _ := get(""); code != http.StatusForbidden {
		t.Errorf("plain request from a blocked peer: %d, want 403", code)
	}

	// Now loopback is a trusted proxy: the rightmost untrusted address of
	// its X-Forwarded-For is the client.
	apply(serverYAML(`127.0.0.1, "::1"`))
	if code, body := get("203.0.113.7"); code != http.StatusOK || body != "welcome" {
		t.Errorf("allowed client behind a trusted proxy: %d %q, want 200", code, body)
	}
	if code, _ := get("203.0.113.7, 198.51.100.1"); code != http.StatusForbidden {
		t.Errorf("client prepending an allowed address: %d, want 403", code)
	}
}
