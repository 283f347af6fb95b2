package sluice_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
)

func TestAdminHostAllowList(t *testing.T) {
	g := newGateway(t, sluice.WithAdminHosts("admin.example", "10.0.0.5"))
	c := adminClient{t: t, h: g.AdminHandler(), addr: "127.0.0.1:5555"}
	for _, tt := range []struct {
		host string
		code int
	}{
		{"localhost", 200},
		{"localhost:2381", 200},
		{"LOCALHOST.", 200},
		{"ui.localhost:2381", 200},
		{"127.0.0.1:2381", 200},
		{"127.1.2.3", 200},
		{"[::1]:2381", 200},
		{"admin.example:2381", 200},
		{"Admin.Example", 200},
		{"10.0.0.5:2381", 200},
		// A name rebound to 127.0.0.1 by its attacker.
		{"evil.example", 403},
		{"evil.example:2381", 403},
		{"localhost.evil.example", 403},
		{"10.0.0.6", 403},
	} {
		if code, body := c.do("GET", "/apis/v2/healthz", "", "Host", tt.host); code != tt.code {
			t.Errorf("Host %q: %d %s, want %d", tt.host, code, body, tt.code)
		}
	}
	// A token does not lift the allow-list.
	locked := newGateway(t, sluice.WithAdminToken("s3cret"))
	c = adminClient{t: t, h: locked.AdminHandler(), addr: "192.0.2.1:5555", token: "s3cret"}
	if code, _ := c.do("GET", "/apis/v2/healthz", "", "Host", "evil.example"); code != 403 {
		t.Errorf("token, foreign Host: %d, want 403", code)
	}
	if _, err := sluice.New(sluice.WithAdminHosts("")); err == nil {
		t.Error("an empty admin host is accepted")
	}
}

func TestAdminCrossOrigin(t *testing.T) {
	g := newGateway(t)
	c := adminClient{t: t, h: g.AdminHandler(), addr: "127.0.0.1:5555"}
	obj := "kind: Pipeline\nname: p\nfilters: [{name: s, kind: Static, body: x}]\n"
	for _, tt := range []struct {
		name, method string
		hdr          []string
		code         int
	}{
		{"cross-site fetch", "PUT", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same-site fetch", "DELETE", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"foreign origin", "PUT", []string{"Origin", "http://evil.example"}, 403},
		{"cross-site read", "GET", []string{"Sec-Fetch-Site", "cross-site"}, 200},
		{"same-origin fetch", "PUT", []string{"Sec-Fetch-Site", "same-origin"}, 200},
		{"same origin", "PUT", []string{"Origin", "http://localhost"}, 200},
		{"no browser headers (a CLI)", "PUT", nil, 200},
	} {
		path, body := "/apis/v2/objects", obj
		if tt.method == "GET" {
			body = ""
		}
		if tt.method == "DELETE" {
			path, body = "/apis/v2/objects/p", ""
		}
		if code, out := c.do(tt.method, path, body, tt.hdr...); code != tt.code {
			t.Errorf("%s: %d %s, want %d", tt.name, code, out, tt.code)
		}
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate.
type testPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "admin"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{pool: pool, server: leaf(2, x509.ExtKeyUsageServerAuth), client: leaf(3, x509.ExtKeyUsageClientAuth)}
}

// TestAdminMutualTLS serves the admin API over mutual TLS on loopback: a
// client without a certificate fails the handshake, one with a certificate
// of the CA is answered; a verified certificate authenticates a client
// that is not on loopback.
func TestAdminMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	g := newGateway(t, sluice.WithAdminTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientCAs:    pki.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}))
	ln, err := g.ListenAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	url := "https://" + ln.Addr().String() + "/apis/v2/healthz"

	get := func(certs ...tls.Certificate) (int, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: certs}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(); err == nil {
		t.Errorf("no client certificate: answered %d", code)
	}
	if code, err := get(pki.client); err != nil || code != 200 {
		t.Errorf("client certificate: %d %v", code, err)
	}

	// Behind the TLS listener, a verified chain stands in for loopback.
	c := adminClient{t: t, h: g.AdminHandler(), addr: "192.0.2.1:5555"}
	if code, _ := c.do("GET", "/apis/v2/healthz", ""); code != 403 {
		t.Errorf("from afar without a certificate: %d, want 403", code)
	}
	leaf, _ := x509.ParseCertificate(pki.client.Certificate[0])
	req := httptest.NewRequest("GET", "/apis/v2/healthz", nil)
	req.Host, req.RemoteAddr = "localhost", "192.0.2.1:5555"
	req.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
	rec := httptest.NewRecorder()
	g.AdminHandler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("from afar with a verified certificate: %d, want 200", rec.Code)
	}
}

func TestListenAdminRefusesExposedWithoutAuth(t *testing.T) {
	open := newGateway(t)
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "[::]:0"} {
		if ln, err := open.ListenAdmin(addr); !errors.Is(err, sluice.ErrAdminUnprotected) {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("ListenAdmin(%q) = %v, want ErrAdminUnprotected", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		ln, err := open.ListenAdmin(addr)
		if err != nil {
			t.Errorf("ListenAdmin(%q): %v", addr, err)
			continue
		}
		ln.Close()
	}
	// With a token (or mTLS) the check passes: binding 192.0.2.1 then
	// fails on this machine for its own reason.
	pki := newTestPKI(t)
	for _, g := range []*sluice.Gateway{
		newGateway(t, sluice.WithAdminToken("s3cret")),
		newGateway(t, sluice.WithAdminTLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool, ClientAuth: tls.RequireAndVerifyClientCert})),
	} {
		ln, err := g.ListenAdmin("192.0.2.1:0")
		if errors.Is(err, sluice.ErrAdminUnprotected) {
			t.Errorf("refused with authentication: %v", err)
		}
		if ln != nil {
			ln.Close()
		}
	}
	// TLS without verified client certificates is not authentication.
	tlsOnly := newGateway(t, sluice.WithAdminTLS(&tls.Config{Certificates: []tls.Certificate{pki.server}}))
	if _, err := tlsOnly.ListenAdmin("192.0.2.1:0"); !errors.Is(err, sluice.ErrAdminUnprotected) {
		t.Errorf("TLS without client certificates: %v, want ErrAdminUnprotected", err)
	}
	if _, err := sluice.New(sluice.WithAdminTLS(&tls.Config{})); err == nil {
		t.Error("WithAdminTLS without a certificate is accepted")
	}
}
