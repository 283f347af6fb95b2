package proxy_test

import (
	"bytes"
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
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// testCA is a certificate authority generated for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate and its key, PEM encoded, for the DNS
// names and IPs in hosts, usable for servers and clients.
func (ca *testCA) issue(t *testing.T, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// protoHandler answers with the backend's name, the protocol the request
// came in and the client's address.
func protoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Remote", r.RemoteAddr)
		w.Header().Set("X-Proto", r.Proto)
		io.WriteString(w, name)
	})
}

// tlsBackend starts an HTTP/2-enabled TLS backend with a certificate of
// ca for hosts; clientCA, when not nil, must have signed the client's
// certificate.
func tlsBackend(t *testing.T, ca *testCA, clientCA *testCA, hosts ...string) *httptest.Server {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, hosts...)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	be := httptest.NewUnstartedServer(protoHandler("tls"))
	be.EnableHTTP2 = true
	be.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCA.cert)
		be.TLS.ClientCAs = pool
		be.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	be.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are what some tests want
	be.StartTLS()
	t.Cleanup(be.Close)
	return be
}

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines at level (e.g. "WARN") that contain msg.
func (l *logBuffer) lines(level, msg string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, "level="+level) && strings.Contains(line, msg) {
			out = append(out, line)
		}
	}
	return out
}

func capture() (*logBuffer, filtertest.Option) {
	buf := new(logBuffer)
	return buf, filtertest.WithLogger(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLSUnverifiedBackend(t *testing.T) {
	t.Parallel()
	be := tlsBackend(t, newTestCA(t, "unknown CA"), nil, "127.0.0.1")
	logs, withLog := capture()
	clk := filtertest.NewFakeClock(time.Unix(1_700_000_000, 0))
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL), withLog, filtertest.WithClock(clk))

	for range 3 {
		out := h.Get("/")
		if out.Result != proxy.ResultServerError || out.Response.StatusCode != http.StatusBadGateway {
			t.Fatalf("result %q, status %d, want serverError and 502", out.Result, out.Response.StatusCode)
		}
	}
	warns := logs.lines("WARN", "certificate not verified")
	if len(warns) != 1 {
		t.Fatalf("%d warnings for 3 failures, want 1:\n%s", len(warns), logs)
	}
	if !strings.Contains(warns[0], be.URL) || !strings.Contains(warns[0], "unknown authority") {
		t.Errorf("warning does not name the server and the error: %s", warns[0])
	}
	if n := len(logs.lines("WARN", "server failed")); n != 0 {
		t.Errorf("%d per-request warnings besides the rate-limited one:\n%s", n, logs)
	}

	// A minute later on the clock, the next failure is logged again.
	clk.Advance(time.Minute)
	h.Get("/")
	if n := len(logs.lines("WARN", "certificate not verified")); n != 2 {
		t.Errorf("%d warnings after a minute, want 2", n)
	}
}

func TestTLSTrust(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "backend CA")
	be := tlsBackend(t, ca, nil, "127.0.0.1")
	other := newTestCA(t, "other CA")
	caFile := writeFile(t, "ca.pem", ca.pem)
	bundle := writeFile(t, "bundle.pem", append(append([]byte{}, other.pem...), ca.pem...))
	tests := []struct {
		name, extra string
	}{
		{"caBase64", "tls: {caBase64: " + b64(ca.pem) + "}"},
		{"caFiles", fmt.Sprintf("tls: {caFiles: [%q]}", caFile)},
		{"caFiles bundle", fmt.Sprintf("tls: {caFiles: [%q]}", bundle)},
		{"mtls rootCertBase64", "mtls: {rootCertBase64: " + b64(ca.pem) + "}"},
		{"minVersion 1.3", "tls: {caBase64: " + b64(ca.pem) + ", minVersion: \"1.3\"}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := filtertest.New(t, proxy.Kind, oneServer(be.URL)+tt.extra+"\n")
			out := h.Get("/")
			if out.Result != pipeline.Continue || out.Response.StatusCode != http.StatusOK || out.Body != "tls" {
				t.Fatalf("result %q, status %d, body %q", out.Result, out.Response.StatusCode, out.Body)
			}
			// HTTP/2 by ALPN with the custom TLS configuration.
			if got := out.Response.Header.Get("X-Proto"); got != "HTTP/2.0" {
				t.Errorf("backend saw %s, want HTTP/2.0", got)
			}
		})
	}
	t.Run("another CA", func(t *testing.T) {
		t.Parallel()
		h := filtertest.New(t, proxy.Kind, oneServer(be.URL)+"tls: {caBase64: "+b64(other.pem)+"}\n")
		if out := h.Get("/"); out.Response.StatusCode != http.StatusBadGateway {
			t.Errorf("status %d, want 502", out.Response.StatusCode)
		}
	})
}

func TestTLSClientCertificate(t *testing.T) {
	t.Parallel()
	ca, clientCA := newTestCA(t, "backend CA"), newTestCA(t, "client CA")
	be := tlsBackend(t, ca, clientCA, "127.0.0.1")
	certPEM, keyPEM := clientCA.issue(t, "gateway")
	certFile, keyFile := writeFile(t, "client.pem", certPEM), writeFile(t, "client-key.pem", keyPEM)
	strangerCert, strangerKey := newTestCA(t, "stranger").issue(t, "gateway")
	tests := []struct {
		name, extra string
		want        int
	}{
		{"files", fmt.Sprintf("tls: {caBase64: %s, certFile: %q, keyFile: %q}", b64(ca.pem), certFile, keyFile), http.StatusOK},
		{"mtls", fmt.Sprintf("mtls: {rootCertBase64: %s, certBase64: %s, keyBase64: %s}", b64(ca.pem), b64(certPEM), b64(keyPEM)), http.StatusOK},
		{"no certificate", "tls: {caBase64: " + b64(ca.pem) + "}", http.StatusBadGateway},
		{"certificate of another CA", fmt.Sprintf("mtls: {rootCertBase64: %s, certBase64: %s, keyBase64: %s}", b64(ca.pem), b64(strangerCert), b64(strangerKey)), http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := filtertest.New(t, proxy.Kind, oneServer(be.URL)+tt.extra+"\n")
			out := h.Get("/")
			if out.Response.StatusCode != tt.want {
				t.Errorf("status %d (result %q), want %d", out.Response.StatusCode, out.Result, tt.want)
			}
			if tt.want == http.StatusBadGateway && out.Result != proxy.ResultServerError {
				t.Errorf("result %q, want serverError", out.Result)
			}
		})
	}
}

func TestTLSServerName(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "backend CA")
	be := tlsBackend(t, ca, nil, "backend.test") // not valid for 127.0.0.1
	trust := "caBase64: " + b64(ca.pem)
	tests := []struct {
		name, tls string
		want      int
	}{
		{"url host", "tls: {" + trust + "}", http.StatusBadGateway},
		{"serverName", "tls: {" + trust + ", serverName: backend.test}", http.StatusOK},
		{"wrong serverName", "tls: {" + trust + ", serverName: other.test}", http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := filtertest.New(t, proxy.Kind, oneServer(be.URL)+tt.tls+"\n")
			if out := h.Get("/"); out.Response.StatusCode != tt.want {
				t.Errorf("status %d (result %q), want %d", out.Response.StatusCode, out.Result, tt.want)
			}
		})
	}
}

func TestTLSInsecureSkipVerify(t *testing.T) {
	t.Parallel()
	be := tlsBackend(t, newTestCA(t, "unknown CA"), nil, "127.0.0.1")
	logs, withLog := capture()
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL)+"tls: {insecureSkipVerify: true}\n", withLog)
	if n := len(logs.lines("WARN", "insecureSkipVerify")); n != 1 {
		t.Errorf("%d build warnings about insecureSkipVerify, want 1:\n%s", n, logs)
	}
	if out := h.Get("/"); out.Response.StatusCode != http.StatusOK || out.Body != "tls" {
		t.Errorf("status %d, body %q", out.Response.StatusCode, out.Body)
	}
}

func TestH2C(t *testing.T) {
	t.Parallel()
	be := httptest.NewUnstartedServer(protoHandler("h2c"))
	be.Config.Protocols = new(http.Protocols)
	be.Config.Protocols.SetHTTP1(true)
	be.Config.Protocols.SetUnencryptedHTTP2(true)
	be.Start()
	t.Cleanup(be.Close)

	tests := []struct{ name, extra, want string }{
		{"default", "", "HTTP/1.1"},
		{"h2c", "protocol: h2c", "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := filtertest.New(t, proxy.Kind, oneServer(be.URL, tt.extra))
			out := h.Get("/")
			if out.Result != pipeline.Continue || out.Body != "h2c" {
				t.Fatalf("result %q, status %d, body %q", out.Result, out.Response.StatusCode, out.Body)
			}
			if got := out.Response.Header.Get("X-Proto"); got != tt.want {
				t.Errorf("backend saw %s, want %s", got, tt.want)
			}
		})
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	url, _ := blocking(t)
	h := filtertest.New(t, proxy.Kind, oneServer(url)+"responseHeaderTimeout: 20ms\nconnectTimeout: 2s\n")
	out := h.Get("/")
	if out.Result != proxy.ResultTimeout || out.Response.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("result %q, status %d, want timeout and 504", out.Result, out.Response.StatusCode)
	}
}

func TestTLSValidation(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing.pem")
	notPEM := writeFile(t, "not.pem", []byte("hello"))
	const srv = "pools:\n- servers:\n  - url: https://a\n"
	tests := []struct {
		name, spec string
		field      string
		line       int
	}{
		{"minVersion", srv + "tls:\n  minVersion: \"1.1\"\n", "tls.minVersion", 5},
		{"certFile without keyFile", srv + "tls:\n  certFile: /x.pem\n", "tls.keyFile", 4},
		{"keyFile without certFile", srv + "tls:\n  keyFile: /x.pem\n", "tls.certFile", 4},
		{"two client certificates", srv + "mtls:\n  certBase64: eA==\n  keyBase64: eA==\ntls:\n  certFile: /a\n  keyFile: /b\n", "tls.certFile", 8},
		{"mtls key without certificate", srv + "mtls:\n  keyBase64: eA==\n", "mtls.certBase64", 4},
		{"serverName", srv + "tls:\n  serverName: \"a:443\"\n", "tls.serverName", 5},
		{"missing CA file", srv + fmt.Sprintf("tls:\n  caFiles:\n  - %q\n", missing), "tls.caFiles[0]", 6},
		{"CA file without PEM", srv + fmt.Sprintf("tls:\n  caFiles: [%q]\n", notPEM), "tls.caFiles[0]", 5},
		{"caBase64 not base64", srv + "tls:\n  caBase64: \"%%%\"\n", "tls.caBase64", 5},
		{"caBase64 not PEM", srv + "tls:\n  caBase64: aGVsbG8=\n", "tls.caBase64", 5},
		{"bad client key pair", srv + "mtls:\n  certBase64: aGVsbG8=\n  keyBase64: aGVsbG8=\n", "mtls.certBase64", 5},
		{"protocol", srv + "  protocol: h3\n", "pools[0].protocol", 4},
		{"connectTimeout", srv + "connectTimeout: -1s\n", "connectTimeout", 4},
		{"responseHeaderTimeout", srv + "responseHeaderTimeout: -1s\n", "responseHeaderTimeout", 4},
		{"unknown tls field", srv + "tls:\n  insecure: true\n", "tls.insecure", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := filtertest.Build(proxy.Kind, tt.spec)
			if err == nil {
				f.(pipeline.Closer).Close()
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("line %d:", tt.line)) || !strings.Contains(msg, fmt.Sprintf("%q", tt.field)) {
				t.Errorf("error %q does not name line %d and field %q", msg, tt.line, tt.field)
			}
		})
	}
}

func TestInheritTLSSettings(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "backend CA")
	be := tlsBackend(t, ca, nil, "127.0.0.1", "backend.test")
	base := oneServer(be.URL) + "tls:\n  caBase64: " + b64(ca.pem) + "\n"
	tests := []struct {
		name, next string
		shared     bool
	}{
		{"same TLS settings", base, true},
		{"CA as a file with the same bytes", oneServer(be.URL) + fmt.Sprintf("tls:\n  caFiles: [%q]\n", writeFile(t, "ca.pem", ca.pem)), true},
		{"serverName", base + "  serverName: backend.test\n", false},
		{"minVersion", base + "  minVersion: \"1.3\"\n", false},
		{"insecureSkipVerify", oneServer(be.URL) + "tls: {insecureSkipVerify: true}\n", false},
		{"connectTimeout", base + "connectTimeout: 3s\n", false},
		{"no tls", oneServer(be.URL), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old := filtertest.New(t, proxy.Kind, base)
			first := old.Get("/").Response.Header.Get("X-Remote")
			next := filtertest.New(t, proxy.Kind, tt.next)
			if err := next.Filter.(pipeline.Inheritor).Inherit(old.Filter); err != nil {
				t.Fatal(err)
			}
			old.Filter.(pipeline.Closer).Close()
			out := next.Get("/")
			if tt.name == "no tls" {
				// Without a CA the backend is not trusted: it must not
				// be reached over the old, trusting transport.
				if out.Response.StatusCode != http.StatusBadGateway {
					t.Errorf("status %d, want 502", out.Response.StatusCode)
				}
				return
			}
			if got := out.Response.Header.Get("X-Remote"); (got == first) != tt.shared {
				t.Errorf("connection %s then %s; want shared=%v", first, got, tt.shared)
			}
		})
	}
}

func TestTLSSpecRoundTrip(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "backend CA")
	certPEM, keyPEM := ca.issue(t, "gateway")
	filtertest.RoundTrip(t, proxy.Kind, &proxy.Spec{
		Pools:                 []proxy.PoolSpec{{Servers: []proxy.ServerSpec{{URL: "http://127.0.0.1:1"}}, Protocol: proxy.ProtocolH2C}},
		ConnectTimeout:        3 * time.Second,
		ResponseHeaderTimeout: 1500 * time.Millisecond,
		MTLS:                  &proxy.MTLSSpec{RootCertBase64: b64(ca.pem)},
		TLS: &proxy.TLSSpec{
			CAFiles:    []string{writeFile(t, "ca.pem", ca.pem)},
			CertFile:   writeFile(t, "c.pem", certPEM),
			KeyFile:    writeFile(t, "k.pem", keyPEM),
			ServerName: "backend.test",
			MinVersion: "1.3",
		},
	})
}

func TestEnvTransportIgnoresTLS(t *testing.T) {
	t.Parallel()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	logs, withLog := capture()
	filtertest.New(t, proxy.Kind, oneServer("https://127.0.0.1:1", "protocol: h2c")+"tls: {insecureSkipVerify: true}\n", withLog, filtertest.WithTransport(base))
	if n := len(logs.lines("WARN", "tls, mtls and protocol of the spec are ignored")); n != 1 {
		t.Errorf("%d warnings that the spec's TLS is ignored, want 1:\n%s", n, logs)
	}
}
