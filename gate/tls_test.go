package gate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"gopkg.in/yaml.v3"
)

// Real TLS with certificates generated here: a CA and leaves signed by it.

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
	pool *x509.CertPool
}

var serial atomic.Int64

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "sluice test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	return ca
}

// leaf returns a PEM certificate and key signed by ca, for server names
// (or, with client set, for client authentication).
func (ca *testCA) leaf(t testing.TB, client bool, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: "leaf"},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

// tlsSpec returns a spec serving https on loopback with the given named
// certificates.
func tlsSpec(t testing.TB, extra string, certs map[string][2]string) *Spec {
	t.Helper()
	s := &Spec{}
	s.SetDefaults()
	if err := yaml.Unmarshal([]byte("port: 0\naddress: 127.0.0.1\nhttps: true\nrules: [{paths: [{backend: p}]}]\n"+extra), s); err != nil {
		t.Fatal(err)
	}
	s.Certs, s.Keys = map[string]string{}, map[string]string{}
	for name, ck := range certs {
		s.Certs[name], s.Keys[name] = ck[0], ck[1]
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// startSpec builds, inherits from prev, listens and serves; each request
// is answered with body and the protocol it came over.
func startSpec(t testing.TB, spec *Spec, prev *Server, body string) *Server {
	t.Helper()
	s, err := New("s", spec, Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", body, r.Proto)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.Inherit(prev)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	return s
}

func tlsClient(t testing.TB, cfg *tls.Config, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(c *http.Client, url string) (*http.Response, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func TestTLSProtocols(t *testing.T) {
	ca := newCA(t)
	c, k := ca.leaf(t, false, "a.test")
	for _, tt := range []struct {
		name     string
		extra    string
		clientH2 bool
		major    int
	}{
		{"h2 by ALPN", "", true, 2},
		{"HTTP/1.1 client", "", false, 1},
		{"http2 off", "http2: false\n", true, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startSpec(t, tlsSpec(t, tt.extra, map[string][2]string{"a": {c, k}}), nil, "ok")
			defer s.Close()
			cl := tlsClient(t, &tls.Config{RootCAs: ca.pool, ServerName: "a.test"}, tt.clientH2)
			resp, body, err := get(cl, "https://"+s.Addr()+"/")
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != tt.major || body != fmt.Sprintf("ok HTTP/%d.%d", tt.major, map[int]int{1: 1, 2: 0}[tt.major]) {
				t.Errorf("got %s %q, want HTTP/%d", resp.Proto, body, tt.major)
			}
			cl.CloseIdleConnections()
		})
	}
	// Plain HTTP to the TLS port is refused.
	s := startSpec(t, tlsSpec(t, "", map[string][2]string{"a": {c, k}}), nil, "ok")
	defer s.Close()
	resp, _, err := get(&http.Client{}, "http://"+s.Addr()+"/")
	if err == nil && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP on the TLS port: %d", resp.StatusCode)
	}
}

func peerNames(t *testing.T, addr, serverName string, roots *x509.CertPool) []string {
	t.Helper()
	cfg := &tls.Config{ServerName: serverName, RootCAs: roots}
	if serverName == "" {
		cfg.InsecureSkipVerify = true // no SNI: we only look at what we get
	}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("%q: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].DNSNames
}

func TestTLSSNI(t *testing.T) {
	ca := newCA(t)
	a, ak := ca.leaf(t, false, "a.test")
	b, bk := ca.leaf(t, false, "b.test", "www.b.test")
	w, wk := ca.leaf(t, false, "*.wild.test")
	s := startSpec(t, tlsSpec(t, "", map[string][2]string{"a": {a, ak}, "b": {b, bk}, "w": {w, wk}}), nil, "ok")
	defer s.Close()
	for _, tt := range []struct{ sni, want string }{
		{"a.test", "a.test"},
		{"b.test", "b.test"},
		{"WWW.B.TEST", "b.test"},
		{"x.wild.test", "*.wild.test"},
		{"", "a.test"},        // no SNI: the default, the first by name
		{"other.test", ""},    // unknown: the default, which does not verify
		{"x.y.wild.test", ""}, // a wildcard covers one label
	} {
		if tt.want == "" {
			conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{ServerName: tt.sni, RootCAs: ca.pool})
			if err == nil {
				conn.Close()
				t.Errorf("%q: verified", tt.sni)
			}
			continue
		}
		if got := peerNames(t, s.Addr(), tt.sni, ca.pool); got[0] != tt.want {
			t.Errorf("SNI %q: got %v, want %s", tt.sni, got, tt.want)
		}
	}
}

func TestTLSClientAuth(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	sc, sk := ca.leaf(t, false, "a.test")
	cc, ck := ca.leaf(t, true)
	oc, ok := other.leaf(t, true)
	good, _ := tls.X509KeyPair([]byte(cc), []byte(ck))
	foreign, _ := tls.X509KeyPair([]byte(oc), []byte(ok))
	caB64 := base64.StdEncoding.EncodeToString([]byte(ca.pem))
	for _, tt := range []struct {
		name, extra         string
		none, good, foreign bool // accepted with no certificate, ca's, other's
	}{
		{"default with a CA is verify", "caCertBase64: " + caB64 + "\n", false, true, false},
		{"verify", "clientAuth: verify\ncaCertBase64: " + caB64 + "\n", false, true, false},
		{"require", "clientAuth: require\n", false, true, true},
		{"request", "clientAuth: request\n", true, true, true},
		{"none", "", true, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startSpec(t, tlsSpec(t, tt.extra, map[string][2]string{"a": {sc, sk}}), nil, "ok")
			defer s.Close()
			for _, c := range []struct {
				name  string
				certs []tls.Certificate
				want  bool
			}{{"no certificate", nil, tt.none}, {"CA's", []tls.Certificate{good}, tt.good}, {"foreign", []tls.Certificate{foreign}, tt.foreign}} {
				cl := tlsClient(t, &tls.Config{RootCAs: ca.pool, ServerName: "a.test", Certificates: c.certs}, true)
				resp, _, err := get(cl, "https://"+s.Addr()+"/")
				if got := err == nil && resp.StatusCode == 200; got != c.want {
					t.Errorf("%s client certificate: accepted %v (%v), want %v", c.name, got, err, c.want)
				}
				cl.CloseIdleConnections()
			}
		})
	}
	// Client CAs from a file.
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, []byte(ca.pem), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSpec(t, tlsSpec(t, "clientAuth: verify\nclientCAFiles: ["+caFile+"]\n", map[string][2]string{"a": {sc, sk}}), nil, "ok")
	defer s.Close()
	cl := tlsClient(t, &tls.Config{RootCAs: ca.pool, ServerName: "a.test", Certificates: []tls.Certificate{good}}, true)
	if _, _, err := get(cl, "https://"+s.Addr()+"/"); err != nil {
		t.Errorf("client CA from a file: %v", err)
	}
}

func TestTLSMinVersion(t *testing.T) {
	ca := newCA(t)
	c, k := ca.leaf(t, false, "a.test")
	for _, tt := range []struct {
		extra   string
		client  uint16
		refused bool
	}{
		{"", tls.VersionTLS11, true}, // default minimum 1.2
		{"", tls.VersionTLS12, false},
		{"minTLSVersion: '1.3'\n", tls.VersionTLS12, true},
		{"minTLSVersion: '1.3'\n", tls.VersionTLS13, false},
	} {
		s := startSpec(t, tlsSpec(t, tt.extra, map[string][2]string{"a": {c, k}}), nil, "ok")
		conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: ca.pool, ServerName: "a.test", MinVersion: tls.VersionTLS10, MaxVersion: tt.client})
		if err == nil {
			conn.Close()
		}
		if (err != nil) != tt.refused {
			t.Errorf("%q with a client up to %s: %v, want refused %v", tt.extra, tls.VersionName(tt.client), err, tt.refused)
		}
		s.Close()
	}
}

func TestTLSSpecErrors(t *testing.T) {
	ca := newCA(t)
	c1, k1 := ca.leaf(t, false, "a.test")
	_, k2 := ca.leaf(t, false, "b.test")
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, []byte(c1), 0o600)
	os.WriteFile(keyFile, []byte(k1), 0o600)
	tests := []struct {
		name  string
		spec  func(*Spec)
		field string // "" means valid
	}{
		{"matching pair", func(s *Spec) { s.Certs, s.Keys = map[string]string{"example": c1}, map[string]string{"example": k1} }, ""},
		{"key of another cert", func(s *Spec) { s.Certs, s.Keys = map[string]string{"example": c1}, map[string]string{"example": k2} }, "keys.example"},
		{"not a cert", func(s *Spec) {
			s.Certs, s.Keys = map[string]string{"example": "junk"}, map[string]string{"example": k1}
		}, "certs.example"},
		{"missing key", func(s *Spec) { s.Certs = map[string]string{"example": c1} }, "keys.example"},
		{"key without cert", func(s *Spec) {
			s.Certs, s.Keys = map[string]string{"example": c1}, map[string]string{"example": k1, "x": k2}
		}, "keys.x"},
		{"no certificate", func(s *Spec) {}, "certs"},
		{"v1 pair", func(s *Spec) { s.CertBase64, s.KeyBase64 = b64(c1), b64(k1) }, ""},
		{"v1 bad base64", func(s *Spec) { s.CertBase64, s.KeyBase64 = "!!", b64(k1) }, "certBase64"},
		{"v1 mismatch", func(s *Spec) { s.CertBase64, s.KeyBase64 = b64(c1), b64(k2) }, "keyBase64"},
		{"cert files", func(s *Spec) { s.CertFiles = []CertFile{{Cert: certFile, Key: keyFile}} }, ""},
		{"missing cert file", func(s *Spec) { s.CertFiles = []CertFile{{Cert: certFile + ".no", Key: keyFile}} }, "certFiles[0].cert"},
		{"missing key file", func(s *Spec) { s.CertFiles = []CertFile{{Cert: certFile, Key: keyFile + ".no"}} }, "certFiles[0].key"},
		{"bad CA", func(s *Spec) { s.CertFiles = []CertFile{{Cert: certFile, Key: keyFile}}; s.CACertBase64 = b64("junk") }, "caCertBase64"},
		{"missing CA file", func(s *Spec) {
			s.CertFiles = []CertFile{{Cert: certFile, Key: keyFile}}
			s.ClientCAFiles = []string{certFile + ".no"}
		}, "clientCAFiles[0]"},
		{"verify without CA", func(s *Spec) { s.CertFiles = []CertFile{{Cert: certFile, Key: keyFile}}; s.ClientAuth = "verify" }, "clientAuth"},
		{"bad clientAuth", func(s *Spec) { s.ClientAuth = "always" }, "clientAuth"},
		{"bad version", func(s *Spec) { s.MinTLSVersion = "1.1" }, "minTLSVersion"},
		{"h2c with https", func(s *Spec) { s.CertFiles = []CertFile{{Cert: certFile, Key: keyFile}}; s.H2C = true }, "h2c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Spec{}
			s.SetDefaults()
			s.HTTPS = true
			tt.spec(s)
			_, err := New("s", s, Options{})
			if tt.field == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), `"`+tt.field+`"`) {
				t.Errorf("got %v, want an error on %s", err, tt.field)
			}
		})
	}
	// With https off the certificates are not loaded.
	s := &Spec{CertFiles: []CertFile{{Cert: "/nonexistent"}}}
	if err := s.Validate(); err != nil {
		t.Errorf("https off: %v", err)
	}
}

func serialOf(resp *http.Response) int64 { return resp.TLS.PeerCertificates[0].SerialNumber.Int64() }

func TestTLSCertReload(t *testing.T) {
	ca := newCA(t)
	c1, k1 := ca.leaf(t, false, "a.test")
	c2, k2 := ca.leaf(t, false, "a.test")
	g1 := startSpec(t, tlsSpec(t, "", map[string][2]string{"a": {c1, k1}}), nil, "one")
	addr := g1.Addr()
	url := "https://" + addr + "/"
	kept := tlsClient(t, &tls.Config{RootCAs: ca.pool, ServerName: "a.test"}, true)
	resp, body, err := get(kept, url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || body != "one HTTP/2.0" {
		t.Fatalf("first generation: %s %q", resp.Proto, body)
	}
	old := serialOf(resp)

	// A new certificate on the same address (port 0 is the address g1
	// bound): no new listener.
	spec2 := tlsSpec(t, "", map[string][2]string{"a": {c2, k2}})
	g2 := startSpec(t, spec2, g1, "two")
	if err := g1.Close(); err != nil {
		t.Fatal(err)
	}
	if g2.Addr() != addr || g2.Status().PendingRestart {
		t.Fatalf("reload: address %s, status %+v", g2.Addr(), g2.Status())
	}
	// The kept-alive h2 connection carries on, with the old certificate
	// and the new routes.
	resp, body, err = get(kept, url)
	if err != nil {
		t.Fatalf("kept-alive connection after the reload: %v", err)
	}
	if serialOf(resp) != old || body != "two HTTP/2.0" {
		t.Errorf("kept-alive connection: serial %d (was %d), body %q", serialOf(resp), old, body)
	}
	// A new handshake gets the new certificate.
	fresh := tlsClient(t, &tls.Config{RootCAs: ca.pool, ServerName: "a.test"}, true)
	resp, body, err = get(fresh, url)
	if err != nil {
		t.Fatal(err)
	}
	if serialOf(resp) == old || body != "two HTTP/2.0" {
		t.Errorf("new handshake: serial %d (old %d), body %q", serialOf(resp), old, body)
	}

	// https off on the same address is a listener-level change: it waits
	// for a restart, and the listener keeps serving TLS with the last
	// certificates.
	spec3 := mustSpec(t, "port: 0\naddress: 127.0.0.1\nrules: [{paths: [{backend: p}]}]\n")
	g3 := startSpec(t, spec3, g2, "three")
	g2.Close()
	if !g3.Status().PendingRestart {
		t.Error("https: false on a TLS listener is not pendingRestart")
	}
	fresh2 := tlsClient(t, &tls.Config{RootCAs: ca.pool, ServerName: "a.test"}, true)
	resp, body, err = get(fresh2, url)
	if err != nil || serialOf(resp) == old || body != "three HTTP/2.0" {
		t.Errorf("after https: false: %v %q", err, body)
	}
	kept.CloseIdleConnections()
	fresh.CloseIdleConnections()
	fresh2.CloseIdleConnections()
	if err := g3.Close(); err != nil {
		t.Fatal(err)
	}
}

func h2cClient(t testing.TB) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestH2CPriorKnowledge(t *testing.T) {
	const y = "port: 0\naddress: 127.0.0.1\nrules: [{paths: [{backend: p}]}]\n"
	on := startSpec(t, mustSpec(t, y+"h2c: true\n"), nil, "ok")
	defer on.Close()
	resp, body, err := get(h2cClient(t), "http://"+on.Addr()+"/")
	if err != nil || resp.ProtoMajor != 2 || body != "ok HTTP/2.0" {
		t.Fatalf("h2c on: %v %q", err, body)
	}
	if _, body, err := get(&http.Client{}, "http://"+on.Addr()+"/"); err != nil || body != "ok HTTP/1.1" {
		t.Errorf("HTTP/1.1 beside h2c: %v %q", err, body)
	}

	off := startSpec(t, mustSpec(t, y), nil, "ok")
	defer off.Close()
	if resp, _, err := get(h2cClient(t), "http://"+off.Addr()+"/"); err == nil {
		t.Errorf("h2c off: served %s", resp.Proto)
	}
	// The preface read as an HTTP/1 request is answered 505.
	conn, err := net.Dial("tcp", off.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.Contains(line, "505") {
		t.Errorf("preface without h2c: %q", line)
	}
	// h2c is listener-level: turning it on for the same address waits.
	spec := mustSpec(t, y+"h2c: true\n")
	g2, _ := New("s", spec, Options{})
	g2.Inherit(off)
	if !g2.Status().PendingRestart {
		t.Error("h2c on for a running listener is not pendingRestart")
	}
}

func TestH2CUpgradeIsStripped(t *testing.T) {
	seen := make(chan http.Header, 1)
	s, err := New("s", mustSpec(t, "port: 0\naddress: 127.0.0.1\nh2c: true\nrules: [{paths: [{backend: p}]}]\n"), Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- r.Header.Clone()
			io.WriteString(w, r.Proto)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	defer s.Close()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings, keep-alive\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Errorf("got %d %s, want 200 over HTTP/1.1", resp.StatusCode, resp.Proto)
	}
	h := <-seen
	if h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" || h.Get("Connection") != "keep-alive" {
		t.Errorf("the backend saw %v", h)
	}
}

func TestStripH2CUpgrade(t *testing.T) {
	for _, tt := range []struct{ upgrade, connection, wantUpgrade, wantConnection string }{
		{"h2c", "Upgrade, HTTP2-Settings", "", ""},
		{"H2C", "upgrade,http2-settings,close", "", "close"},
		{"websocket, h2c", "Upgrade, HTTP2-Settings", "websocket", "Upgrade"},
		{"websocket", "Upgrade", "websocket", "Upgrade"},
	} {
		h := http.Header{"Upgrade": {tt.upgrade}, "Connection": {tt.connection}, "Http2-Settings": {"AAMAAABkAAQAAP__"}}
		stripH2CUpgrade(h)
		if h.Get("Upgrade") != tt.wantUpgrade || h.Get("Connection") != tt.wantConnection {
			t.Errorf("%q / %q: got %q / %q", tt.upgrade, tt.connection, h.Get("Upgrade"), h.Get("Connection"))
		}
	}
}

// readStream reads frames from fr until stream id ends, answering the
// server's SETTINGS, and returns the :status and the body.
func readStream(t *testing.T, fr *http2.Framer, id uint32) (status, body string) {
	t.Helper()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				status = f.PseudoValue("status")
				if f.StreamEnded() {
					return status, body
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				body += string(f.Data())
				if f.StreamEnded() {
					return status, body
				}
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY before stream %d ended", id)
		}
	}
}

func TestH2CUpgrade(t *testing.T) {
	s := startSpec(t, mustSpec(t, `
port: 0
address: 127.0.0.1
rules:
  - host: up.test
    allowH2CUpgrade: true
    paths: [{backend: p}]
  - paths:
      - {path: /up, allowH2CUpgrade: true, backend: p}
      - {backend: p}
`), nil, "ok")
	defer s.Close()
	const upgrade = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
	for _, tt := range []struct {
		name, request string
		upgraded      bool
	}{
		{"allowed path", "GET /up HTTP/1.1\r\nHost: a.test\r\n" + upgrade, true},
		{"path not allowed", "GET /other HTTP/1.1\r\nHost: a.test\r\n" + upgrade, false},
		{"allowed rule", "GET /other HTTP/1.1\r\nHost: up.test\r\n" + upgrade, true},
		{"with a body", "POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n" + upgrade + "hi", false},
		{"two settings", "GET /up HTTP/1.1\r\nHost: a.test\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n" + upgrade, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, tt.request)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.upgraded {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
				if resp.StatusCode != 200 || string(b) != "ok HTTP/1.1" {
					t.Errorf("got %d %q, want 200 over HTTP/1.1", resp.StatusCode, b)
				}
				return
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("got %d, want 101", resp.StatusCode)
			}
			io.WriteString(conn, http2.ClientPreface)
			fr := http2.NewFramer(conn, br)
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			fr.WriteSettings()
			// The upgraded request is stream 1.
			if status, body := readStream(t, fr, 1); status != "200" || body != "ok HTTP/2.0" {
				t.Errorf("stream 1: %s %q", status, body)
			}
			// The connection now speaks HTTP/2.
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a.test"}, {":path", "/other"}} {
				enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
			if status, body := readStream(t, fr, 3); status != "200" || body != "ok HTTP/2.0" {
				t.Errorf("stream 3: %s %q", status, body)
			}
		})
	}
}

// An upgraded connection is hijacked from net/http; Shutdown still
// drains it: GOAWAY, then the connection closes.
func TestH2CUpgradeShutdown(t *testing.T) {
	s := startSpec(t, mustSpec(t, "port: 0\naddress: 127.0.0.1\nrules: [{allowH2CUpgrade: true, paths: [{backend: p}]}]\n"), nil, "ok")
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v", err)
	}
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	readStream(t, fr, 1)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	goAway := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break // closed by the server
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			goAway = true
		}
	}
	if !goAway {
		t.Error("no GOAWAY before the close")
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// A client CA removed by a reload also refuses sessions resumed from
// tickets issued before it (crypto/tls re-checks the session's chain
// against the current ClientCAs; this guards that we rely on it).
func TestTLSClientCAReloadRefusesResumption(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	sc, sk := ca.leaf(t, false, "a.test")
	cc, ck := ca.leaf(t, true)
	good, _ := tls.X509KeyPair([]byte(cc), []byte(ck))
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	g1 := startSpec(t, tlsSpec(t, "caCertBase64: "+b64(ca.pem)+"\n", map[string][2]string{"a": {sc, sk}}), nil, "one")
	url := "https://" + g1.Addr() + "/"
	cl := tlsClient(t, &tls.Config{RootCAs: ca.pool, ServerName: "a.test", Certificates: []tls.Certificate{good}, ClientSessionCache: tls.NewLRUClientSessionCache(8)}, true)
	for i, wantResume := range []bool{false, true} {
		resp, _, err := get(cl, url)
		if err != nil {
			t.Fatal(err)
		}
		if resp.TLS.DidResume != wantResume {
			t.Fatalf("connection %d: resumed %v", i, resp.TLS.DidResume)
		}
		cl.CloseIdleConnections()
	}
	g2 := startSpec(t, tlsSpec(t, "caCertBase64: "+b64(other.pem)+"\n", map[string][2]string{"a": {sc, sk}}), g1, "two")
	g1.Close()
	defer g2.Close()
	if resp, _, err := get(cl, url); err == nil {
		t.Errorf("a session resumed past the CA change was accepted (resumed %v)", resp.TLS.DidResume)
	}
}
