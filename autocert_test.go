package sluice_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/internal/clock"
)

const pebbleInstall = "go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.8.0"

// requirePebble returns the path of the pebble ACME test server. Without
// it the test is skipped, except under CI (SLUICE_CI=1), where .ci/run
// installs it and a missing one is a failure.
func requirePebble(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	if p := filepath.Join(os.Getenv("HOME"), "go", "bin", "pebble"); fileExists(p) {
		return p
	}
	if os.Getenv("SLUICE_CI") != "" {
		t.Fatalf("pebble is not installed (%s); .ci/run installs it", pebbleInstall)
	}
	t.Skipf("pebble is not installed (%s)", pebbleInstall)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// pebbleServer is a running pebble.
type pebbleServer struct {
	dirURL string
	caPEM  string // the CA of pebble's own HTTPS listeners
	mgmt   string // management API base URL
	client *http.Client
}

// startPebble runs pebble on loopback with a certificate generated for
// its listeners; its validation authority checks HTTP-01 on httpPort and
// TLS-ALPN-01 on tlsPort of "localhost", for real. Certificates it issues
// are valid for one hour.
func startPebble(t *testing.T, httpPort, tlsPort string) *pebbleServer {
	t.Helper()
	bin := requirePebble(t)
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := loopbackCert(t)
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listen, mgmt := freePort(t), freePort(t)
	hp, _ := strconv.Atoi(httpPort)
	tp, _ := strconv.Atoi(tlsPort)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             write("cert.pem", certPEM),
		"privateKey":              write("key.pem", keyPEM),
		"httpPort":                hp,
		"tlsPort":                 tp,
		"ocspResponderURL":        "",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles":                map[string]any{"default": map[string]any{"description": "short-lived", "validityPeriod": 3600}},
	}}
	b, _ := json.Marshal(cfg)
	conf := write("pebble.json", string(b))
	var logs strings.Builder
	cmd := exec.Command(bin, "-config", conf)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pebble log:\n%s", logs.String())
		}
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(caPEM))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	ps := &pebbleServer{dirURL: "https://" + listen + "/dir", caPEM: caPEM, mgmt: "https://" + mgmt, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	waitUntil(t, "pebble to answer", func() error {
		resp, err := ps.client.Get(ps.dirURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return ps
}

// roots returns the pool of pebble's issuing root, from its management
// API.
func (ps *pebbleServer) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := ps.client.Get(ps.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble's root is not PEM: %q", b)
	}
	return pool
}

// loopbackCert makes a CA and a certificate of it for localhost and
// 127.0.0.1.
func loopbackCert(t *testing.T) (caPEM, certPEM, keyPEM string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitUntil retries f until it succeeds, failing the test after a minute.
func waitUntil(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// servedSerial connects to an https server as "localhost", verifies its
// certificate against roots and returns the certificate's serial number.
func servedSerial(addr string, roots *x509.CertPool) (string, error) {
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: roots})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

const autoCertServers = `
kind: HTTPServer
name: plain
port: 0
address: 127.0.0.1
rules: [{paths: [{backend: p}]}]
---
kind: HTTPServer
name: secure
port: 0
address: 127.0.0.1
https: true
autoCert: true
rules: [{paths: [{backend: p}]}]
`

func autoCertYAML(ps *pebbleServer, http01, alpn bool) string {
	ca, _ := json.Marshal(ps.caPEM)
	return fmt.Sprintf(`
kind: AutoCertManager
name: autocert
email: ops@example.com
directoryURL: %s
directoryCA: %s
renewBefore: 20m
enableHTTP01: %t
enableTLSALPN01: %t
domains: [{name: localhost}]
`, ps.dirURL, ca, http01, alpn)
}

func autoCertStatus(t *testing.T, g *sluice.Gateway) sluice.AutoCertDomainStatus {
	t.Helper()
	for _, o := range g.Status().Objects {
		if o.Name == "autocert" {
			return o.Status.(sluice.AutoCertStatus).Domains[0]
		}
	}
	t.Fatal("no autocert object")
	return sluice.AutoCertDomainStatus{}
}

// TestAutoCertPebble obtains certificates from a real ACME server, pebble,
// which validates the challenges for real against the gateway's servers on
// loopback: the gateway then serves the certificate, a second gateway on
// the same store serves it without ordering its own, and advancing the
// gateways' clock past the renewal time renews it.
func TestAutoCertPebble(t *testing.T) {
	for _, tt := range []struct {
		name        string
		http01, tls bool
	}{
		{"http-01", true, false},
		{"tls-alpn-01", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := sluice.NewMemoryStore()
			t.Cleanup(func() { store.Close() })
			fake := clock.NewFake(time.Now())
			g := newGateway(t, sluice.WithStore(store), sluice.WithClock(fake))
			apply(t, g, autoCertServers+"---"+staticPipeline("hello"))
			if err := g.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, httpPort, _ := net.SplitHostPort(serverAddr(t, g, "plain"))
			secure := serverAddr(t, g, "secure")
			_, tlsPort, _ := net.SplitHostPort(secure)
			ps := startPebble(t, httpPort, tlsPort)
			apply(t, g, autoCertYAML(ps, tt.http01, tt.tls))
			roots := ps.roots(t)

			var first string
			waitUntil(t, "the managed certificate", func() (err error) {
				first, err = servedSerial(secure, roots)
				if err != nil {
					if st := autoCertStatus(t, g); st.Error != "" {
						err = fmt.Errorf("%w (manager: %s)", err, st.Error)
					}
				}
				return err
			})
			st := autoCertStatus(t, g)
			if st.Obtained != 1 || st.Serial != first {
				t.Fatalf("status %+v, served serial %s", st, first)
			}
			// The certificate is in the store as an internal record,
			// not an object.
			records, _, _ := store.List(context.Background())
			var stored bool
			for _, r := range records {
				stored = stored || (strings.HasSuffix(r.Kind, "Certificate") && r.Name == "localhost")
			}
			if !stored {
				t.Fatalf("no certificate record in the store: %v", records)
			}
			for _, s := range g.List("") {
				if s.Name == "localhost" {
					t.Fatalf("the certificate is listed as an object: %v", s)
				}
			}
			// The request path works with the managed certificate.
			tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: "localhost", RootCAs: roots}}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://" + secure + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "hello") {
				t.Fatalf("GET: %d %q", resp.StatusCode, body)
			}

			if tt.name != "http-01" {
				return
			}
			// A second gateway on the same store (a cluster member)
			// serves the certificate without ordering one.
			g2 := newGateway(t, sluice.WithStore(store), sluice.WithClock(fake))
			if err := g2.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			secure2 := serverAddr(t, g2, "secure")
			waitUntil(t, "the shared certificate", func() error {
				s, err := servedSerial(secure2, roots)
				if err == nil && s != first {
					err = fmt.Errorf("serial %s, want %s", s, first)
				}
				return err
			})
			if st := autoCertStatus(t, g2); st.Obtained != 0 {
				t.Fatalf("the second gateway ordered a certificate: %+v", st)
			}

			// Renewal: pebble's certificates last an hour and are
			// renewed 20 minutes before expiry.
			fake.Advance(45 * time.Minute)
			waitUntil(t, "the renewed certificate", func() error {
				s, err := servedSerial(secure, roots)
				if err == nil && s == first {
					err = errors.New("still the first certificate")
				}
				return err
			})
			if st := autoCertStatus(t, g); st.Obtained < 2 || st.Error != "" {
				t.Fatalf("after renewal: %+v", st)
			}
		})
	}
}

func TestAutoCertSpecErrors(t *testing.T) {
	base := "kind: AutoCertManager\nname: a\n"
	for _, tt := range []struct{ name, body, field string }{
		{"no email", "domains: [{name: a.example}]\n", "email"},
		{"http directory", "email: a@b.example\ndirectoryURL: http://ca.example/dir\ndomains: [{name: a.example}]\n", "directoryURL"},
		{"bad directory CA", "email: a@b.example\ndirectoryCA: nope\ndomains: [{name: a.example}]\n", "directoryCA"},
		{"dns-01", "email: a@b.example\nenableDNS01: true\ndomains: [{name: a.example}]\n", "enableDNS01"},
		{"no challenge", "email: a@b.example\nenableHTTP01: false\nenableTLSALPN01: false\ndomains: [{name: a.example}]\n", "enableHTTP01"},
		{"no domains", "email: a@b.example\n", "domains"},
		{"wildcard", "email: a@b.example\ndomains: [{name: a.example}, {name: '*.example.com'}]\n", "domains[1].name"},
		{"ip", "email: a@b.example\ndomains: [{name: 192.0.2.1}]\n", "domains[0].name"},
		{"bad name", "email: a@b.example\ndomains: [{name: 'a_b.example'}]\n", "domains[0].name"},
		{"duplicate", "email: a@b.example\ndomains: [{name: a.example}, {name: A.example.}]\n", "domains[1].name"},
		{"dns provider", "email: a@b.example\ndomains: [{name: a.example, dnsProvider: {name: dnspod}}]\n", "domains[0].dnsProvider"},
		{"renewBefore", "email: a@b.example\nrenewBefore: -1h\ndomains: [{name: a.example}]\n", "renewBefore"},
		{"unknown field", "email: a@b.example\nrenewAfter: 1h\ndomains: [{name: a.example}]\n", "renewAfter"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := newGateway(t)
			err := g.ApplyYAML(context.Background(), strings.NewReader(base+tt.body))
			var oe *sluice.ObjectError
			if !errors.As(err, &oe) || oe.Field != tt.field {
				t.Fatalf("err = %v, want one on field %s", err, tt.field)
			}
		})
	}
}

// TestAutoCertHTTPSNeedsCertOrAutoCert: an https server without a
// certificate of its own is an error unless it sets autoCert, and then it
// fails handshakes for names no manager covers.
func TestAutoCertHTTPSNeedsCertOrAutoCert(t *testing.T) {
	g := newGateway(t)
	err := g.ApplyYAML(context.Background(), strings.NewReader("kind: HTTPServer\nname: s\nport: 0\nhttps: true\nrules: [{paths: [{backend: p}]}]\n"))
	var oe *sluice.ObjectError
	if !errors.As(err, &oe) || oe.Field != "certs" {
		t.Fatalf("err = %v, want one on certs", err)
	}
	apply(t, g, "kind: HTTPServer\nname: s\nport: 0\naddress: 127.0.0.1\nhttps: true\nautoCert: true\nrules: [{paths: [{backend: p}]}]\n")
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", serverAddr(t, g, "s"), &tls.Config{ServerName: "unknown.example", InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Fatal("handshake without any certificate succeeded")
	}
}

// TestAutoCertStoreRecordsAreNotObjects: the manager's records in a store
// (here written by hand) neither stop a gateway from loading the store nor
// become objects, at load or when they arrive through the watch.
func TestAutoCertStoreRecordsAreNotObjects(t *testing.T) {
	store := sluice.NewMemoryStore()
	t.Cleanup(func() { store.Close() })
	rec := func(kind, name string) sluice.Op {
		return sluice.Op{Kind: kind, Name: name, Spec: []byte("kind: " + kind + "\nname: " + name + "\ncert: x\nkey: y\n")}
	}
	ctx := context.Background()
	if _, err := store.Commit(ctx, rec("sluice:Certificate", "www.example.com")); err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, sluice.WithStore(store))
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Commit(ctx, rec("sluice:ACMEChallenge", "tok")); err != nil {
		t.Fatal(err)
	}
	apply(t, g, staticPipeline("x")) // a later change is still applied
	if specs := g.List(""); len(specs) != 1 || specs[0].Name != "p" {
		t.Fatalf("objects: %v", specs)
	}
}

// TestAutoCertUnreachableDirectory: a manager whose CA cannot be reached
// reports the error in its status and stops with the gateway.
func TestAutoCertUnreachableDirectory(t *testing.T) {
	fake := clock.NewFake(time.Now())
	g := newGateway(t, sluice.WithClock(fake))
	dead := freePort(t) // nothing listens there any more
	apply(t, g, "kind: AutoCertManager\nname: autocert\nemail: ops@example.com\ndirectoryURL: https://"+dead+"/dir\ndomains: [{name: www.example.com}]\n")
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the error in the status", func() error {
		if st := autoCertStatus(t, g); st.Error == "" || st.Obtained != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

// TestAutoCertSpecRoundTrip: the Go spec and its YAML are one: a spec
// made in Go applies, and its YAML decodes back to the same value.
func TestAutoCertSpecRoundTrip(t *testing.T) {
	in := &sluice.AutoCertSpec{}
	in.SetDefaults()
	in.Email = "ops@example.com"
	in.RenewBefore = 48 * time.Hour
	in.EnableTLSALPN01 = false
	in.Domains = []sluice.AutoCertDomain{{Name: "www.example.com"}, {Name: "api.example.com"}}
	g := newGateway(t)
	if err := g.Apply(context.Background(), sluice.NewSpec(sluice.KindAutoCertManager, "a", in)); err != nil {
		t.Fatal(err)
	}
	s, _ := g.Get(sluice.KindAutoCertManager, "a")
	y := string(s.YAML())
	for _, want := range []string{"email: ops@example.com", "renewBefore: 48h0m0s", "enableTLSALPN01: false", "name: api.example.com"} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %q:\n%s", want, y)
		}
	}
	out := &sluice.AutoCertSpec{}
	if err := s.Decode(out); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out) != fmt.Sprint(in) {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
}
