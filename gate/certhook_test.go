package gate

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCertificateHook: a name that a static certificate covers gets it; any
// other name asks Options.GetCertificate before the default certificate; a
// TLS-ALPN-01 handshake (ALPN "acme-tls/1" alone) is answered by the hook
// only; with autoCert and no static certificate the hook is all there is.
func TestCertificateHook(t *testing.T) {
	ca := newCA(t)
	staticC, staticK := ca.leaf(t, false, "static.example")
	hookC, hookK := ca.leaf(t, false, "managed.example", "other.example")
	managed, err := tls.X509KeyPair([]byte(hookC), []byte(hookK))
	if err != nil {
		t.Fatal(err)
	}
	hook := func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "managed.example" {
			return &managed, nil
		}
		return nil, errors.New("not managed")
	}
	serve := func(spec *Spec) *Server {
		s, err := New("s", spec, Options{GetCertificate: hook, Resolve: func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		s.Serve()
		t.Cleanup(func() { s.Close() })
		return s
	}
	leafName := func(addr, name string, protos ...string) (string, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, NextProtos: protos, InsecureSkipVerify: true}) // #nosec G402 -- the test checks the names itself
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].DNSNames[0], nil
	}

	withStatic := serve(tlsSpec(t, "", map[string][2]string{"a": {staticC, staticK}}))
	for _, tt := range []struct {
		name, want string // want "" means the handshake fails
		protos     []string
	}{
		{"static.example", "static.example", nil},
		{"managed.example", "managed.example", nil},
		{"unknown.example", "static.example", nil}, // the default certificate
		{"managed.example", "managed.example", []string{ACMETLSProtocol}},
		{"static.example", "", []string{ACMETLSProtocol}}, // never a static certificate
	} {
		got, err := leafName(withStatic.Addr(), tt.name, tt.protos...)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("%s %v: served %q (%v), want %q", tt.name, tt.protos, got, err, tt.want)
		}
	}

	auto := serve(mustSpec(t, "port: 0\naddress: 127.0.0.1\nhttps: true\nautoCert: true\nrules: [{paths: [{backend: p}]}]\n"))
	if got, err := leafName(auto.Addr(), "managed.example"); err != nil || got != "managed.example" {
		t.Errorf("autoCert, managed name: %s %v", got, err)
	}
	if _, err := leafName(auto.Addr(), "unknown.example"); err == nil {
		t.Error("autoCert, unmanaged name: handshake succeeded")
	}
}

// TestHTTPChallengeHook: a cleartext server offers requests under
// ACMEChallengePath to Options.HTTPChallenge before routing; what the hook
// does not answer is routed as usual.
func TestHTTPChallengeHook(t *testing.T) {
	var routed int
	s, err := New("s", mustSpec(t, "port: 0\naddress: 127.0.0.1\nipFilter: {blockByDefault: true}\nrules: [{paths: [{backend: p}]}]\n"), Options{
		HTTPChallenge: func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != ACMEChallengePath+"tok" {
				return false
			}
			io.WriteString(w, "tok.thumb")
			return true
		},
		Resolve: func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { routed++ })
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		code int
		body string
	}{
		{ACMEChallengePath + "tok", 200, "tok.thumb"}, // before the IP filter
		{ACMEChallengePath + "other", 403, ""},        // routed: blocked by the IP filter
		{"/", 403, ""},
	} {
		code, body := serveOnce(s, tt.path)
		if code != tt.code || (tt.body != "" && body != tt.body) {
			t.Errorf("%s: %d %q, want %d %q", tt.path, code, body, tt.code, tt.body)
		}
	}
	if routed != 0 {
		t.Errorf("routed %d requests past the IP filter", routed)
	}
}

func serveOnce(s *Server, path string) (int, string) {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}
