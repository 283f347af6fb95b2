package gate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"testing"
)

// identityServer returns a server trusting trusted whose backend records
// ClientIP and RequestID of the request it gets.
func identityServer(t *testing.T, trusted string) (*Server, *netip.Addr, *string) {
	t.Helper()
	ip, id := new(netip.Addr), new(string)
	y := "trustedProxies: " + trusted + "\nrules: [{paths: [{backend: p}]}]\n"
	s, err := New("s", mustSpec(t, y), Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			*ip, *id = ClientIP(r), RequestID(r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s, ip, id
}

func TestClientIPTrustedProxies(t *testing.T) {
	s, got, _ := identityServer(t, "[10.0.0.0/8, '2001:db8:1::/48', 192.0.2.1]")
	tests := []struct {
		name   string
		remote string
		header map[string][]string
		want   string
	}{
		{"no proxy", "203.0.113.9:5000", nil, "203.0.113.9"},
		{"spoofed XFF from an untrusted peer", "203.0.113.9:5000",
			map[string][]string{"X-Forwarded-For": {"1.2.3.4"}, "X-Real-Ip": {"1.2.3.5"}, "Forwarded": {"for=1.2.3.6"}}, "203.0.113.9"},
		{"trusted peer, one hop", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"rightmost untrusted of a trusted chain", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.9.9.9"}}, "198.51.100.7"},
		{"chain over several headers", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7", "192.0.2.1 , 10.9.9.9"}}, "198.51.100.7"},
		{"every hop trusted: the leftmost", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"10.5.5.5, 10.9.9.9"}}, "10.5.5.5"},
		{"garbage stops the walk", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7, nonsense, 10.9.9.9"}}, "10.9.9.9"},
		{"bare /32 entry trusted", "192.0.2.1:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.8"}}, "198.51.100.8"},
		{"a neighbour of the /32 is not", "192.0.2.2:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.8"}}, "192.0.2.2"},
		{"IPv6 peer and client", "[2001:db8:1::5]:443",
			map[string][]string{"X-Forwarded-For": {"2001:db8:ffff::1, 2001:db8:1::9"}}, "2001:db8:ffff::1"},
		{"IPv6 peer outside the prefix", "[2001:db8:2::5]:443",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "2001:db8:2::5"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:443",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7"},
		{"X-Real-IP", "10.1.2.3:5000",
			map[string][]string{"X-Real-Ip": {"198.51.100.10"}}, "198.51.100.10"},
		{"XFF wins over X-Real-IP", "10.1.2.3:5000",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}, "X-Real-Ip": {"198.51.100.10"}}, "198.51.100.7"},
		{"Forwarded", "10.1.2.3:5000",
			map[string][]string{"Forwarded": {"for=198.51.100.11;proto=https, for=10.3.3.3"}}, "198.51.100.11"},
		{"Forwarded with quoted IPv6 and port", "10.1.2.3:5000",
			map[string][]string{"Forwarded": {`for="[2001:db8:cafe::17]:4711";by=10.0.0.1`}}, "2001:db8:cafe::17"},
		{"Forwarded with quoted IPv4 and port, case-insensitive", "10.1.2.3:5000",
			map[string][]string{"Forwarded": {`For="198.51.100.12:80"`}}, "198.51.100.12"},
		{"Forwarded obfuscated: the peer", "10.1.2.3:5000",
			map[string][]string{"Forwarded": {`for=_hidden`}}, "10.1.2.3"},
		{"trusted peer without headers", "10.1.2.3:5000", nil, "10.1.2.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.remote
			for k, v := range tt.header {
				req.Header[k] = v
			}
			*got = netip.Addr{}
			s.ServeHTTP(httptest.NewRecorder(), req)
			if got.String() != tt.want {
				t.Errorf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestClientIPFallback(t *testing.T) {
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "[::ffff:198.51.100.1]:1234"
	req.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := ClientIP(req); got != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("ClientIP without a server = %s, want the RemoteAddr", got)
	}
	req.RemoteAddr = "not an address"
	if got := ClientIP(req); got.IsValid() {
		t.Errorf("ClientIP of a bad RemoteAddr = %s, want the zero Addr", got)
	}
	if got := RequestID(req.WithContext(context.Background())); got != "" {
		t.Errorf("RequestID without a server = %q", got)
	}
}

func TestRequestID(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	tests := []struct {
		name, spec, remote, incoming string
		keep                         bool
	}{
		{"generated", "[]", "203.0.113.9:1", "", false},
		{"kept from a trusted proxy", "[10.0.0.0/8]", "10.0.0.1:1", "abc-123_x.y", true},
		{"replaced from an untrusted peer", "[10.0.0.0/8]", "203.0.113.9:1", "abc-123", false},
		{"malformed replaced", "[10.0.0.0/8]", "10.0.0.1:1", "bad id\twith space", false},
		{"too long replaced", "[10.0.0.0/8]", "10.0.0.1:1", string(make([]byte, 129)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, got := identityServer(t, tt.spec)
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.remote
			if tt.incoming != "" {
				req.Header.Set("X-Request-Id", tt.incoming)
			}
			s.ServeHTTP(httptest.NewRecorder(), req)
			if tt.keep {
				if *got != tt.incoming {
					t.Errorf("RequestID = %q, want %q kept", *got, tt.incoming)
				}
			} else if !hex32.MatchString(*got) || *got == tt.incoming {
				t.Errorf("RequestID = %q, want a new 32-hex-digit id", *got)
			}
			if h := req.Header.Values("X-Request-Id"); len(h) != 1 || h[0] != *got {
				t.Errorf("header for the backend %q, want [%q]", h, *got)
			}
		})
	}
	// Two requests get two IDs; the header name is configurable.
	s, err := New("s", mustSpec(t, "requestIDHeader: x-trace\nrules: [{paths: [{backend: p}]}]\n"), Options{Resolve: named})
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := httptest.NewRequest("GET", "/", nil), httptest.NewRequest("GET", "/", nil)
	s.ServeHTTP(httptest.NewRecorder(), r1)
	s.ServeHTTP(httptest.NewRecorder(), r2)
	if a, b := r1.Header.Get("X-Trace"), r2.Header.Get("X-Trace"); !hex32.MatchString(a) || a == b {
		t.Errorf("ids %q and %q", a, b)
	}
}
