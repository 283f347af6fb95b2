package gate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// ipFilterSpec blocks 203.0.113.0/24 at server level except one address,
// trusts the proxy 10.0.0.1, and lets only 198.51.100.0/24 into the rule
// of admin.example.com.
const ipFilterSpec = `
trustedProxies: [10.0.0.1]
ipFilter:
  blockIPs: [203.0.113.0/24]
  allowIPs: [203.0.113.7]
rules:
  - host: admin.example.com
    ipFilter: {blockByDefault: true, allowIPs: [198.51.100.0/24]}
    paths: [{pathPrefix: /, backend: admin}]
  - paths: [{pathPrefix: /, backend: public}]
`

func TestIPFilter(t *testing.T) {
	s, err := New("s", mustSpec(t, ipFilterSpec), Options{Resolve: named})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote, host, xff string
		status                  int
		body                    string
	}{
		{"allowed client", "192.0.2.5:4000", "www.example.com", "", 200, "public"},
		{"blocked range", "203.0.113.9:4000", "www.example.com", "", 403, ""},
		{"allowed hole in the blocked range", "203.0.113.7:4000", "www.example.com", "", 200, "public"},
		{"blocked client behind the trusted proxy", "10.0.0.1:4000", "www.example.com", "203.0.113.9", 403, ""},
		{"spoofed XFF from an untrusted peer does not get in", "203.0.113.9:4000", "www.example.com", "192.0.2.5", 403, ""},
		{"spoofed XFF from an untrusted peer does not block", "192.0.2.5:4000", "www.example.com", "203.0.113.9", 200, "public"},
		{"rule admits its range", "10.0.0.1:4000", "admin.example.com", "198.51.100.3", 200, "admin"},
		{"rule refuses the rest", "192.0.2.5:4000", "admin.example.com", "", 403, ""},
		{"rule refuses a spoofed XFF", "192.0.2.5:4000", "admin.example.com", "198.51.100.3", 403, ""},
		{"server filter comes first", "203.0.113.9:4000", "admin.example.com", "", 403, ""},
		{"IPv6 passes the IPv4 lists", "[2001:db8::1]:4000", "www.example.com", "", 200, "public"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://"+tt.host+"/x", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			if tt.body != "" && w.Body.String() != tt.body {
				t.Errorf("body %q, want %q", w.Body, tt.body)
			}
		})
	}
	if got := s.Status().Forbidden; got != 6 {
		t.Errorf("Status().Forbidden = %d, want 6", got)
	}
}

// TestIPFilterOverTheNetwork runs a real listener: the loopback client is
// refused, and a spoofed X-Forwarded-For naming an allowed address does
// not help, since loopback is not a trusted proxy.
func TestIPFilterOverTheNetwork(t *testing.T) {
	spec := mustSpec(t, `
address: 127.0.0.1
ipFilter: {blockByDefault: true, allowIPs: [192.0.2.0/24], blockIPs: [127.0.0.0/8]}
rules: [{paths: [{pathPrefix: /, backend: b}]}]
`)
	s := serveHandler(t, spec, named("b"))
	t.Cleanup(func() { s.Close() })
	c := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	for _, xff := range []string{"", "192.0.2.1"} {
		req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/", nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || strings.TrimSpace(string(body)) != "forbidden" {
			t.Errorf("XFF %q: %d %q, want 403 forbidden", xff, resp.StatusCode, body)
		}
	}
}

func TestIPFilterSpecErrors(t *testing.T) {
	tests := []struct{ spec, field string }{
		{"ipFilter: {allowIPs: [10.0.0.0/8, nonsense]}", "ipFilter.allowIPs[1]"},
		{"ipFilter: {blockIPs: [10.0.0.0/33]}", "ipFilter.blockIPs[0]"},
		{"ipFilter: {allowIPs: [10.0.0.0/8], blockIPs: [10.0.0.0/8]}", "ipFilter.blockIPs[0]"},
		{"rules: [{paths: [{backend: b}]}, {ipFilter: {blockIPs: ['fe80::1%eth0']}, paths: [{backend: b}]}]", "rules[1].ipFilter.blockIPs[0]"},
	}
	for _, tt := range tests {
		spec := &Spec{}
		spec.SetDefaults()
		if err := yaml.Unmarshal([]byte(tt.spec), spec); err != nil {
			t.Fatalf("%s: %v", tt.spec, err)
		}
		err := spec.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: error %v, want one naming %s", tt.spec, err, tt.field)
		}
	}
}
