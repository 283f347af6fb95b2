package sluice_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reloadPKI is a CA and the leaf certificates it issues for 127.0.0.1.
type reloadPKI struct {
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	roots *x509.CertPool
}

func newReloadPKI(t *testing.T) *reloadPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reload test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &reloadPKI{ca: ca, key: key, roots: roots}
}

// leaf issues a certificate for 127.0.0.1 with the given serial number and
// returns it and its key in PEM.
func (p *reloadPKI) leaf(t *testing.T, serial int64) (certPEM, keyPEM string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

// httpsServerYAML is the HTTPServer "server" on 127.0.0.1:port with one
// certificate, routing everything to pipeline p.
func httpsServerYAML(port, certPEM, keyPEM string) string {
	return fmt.Sprintf(`kind: HTTPServer
name: server
port: %s
address: 127.0.0.1
https: true
certs: {main: %q}
keys: {main: %q}
rules: [{paths: [{pathPrefix: /, backend: p}]}]
`, port, certPEM, keyPEM)
}

// TestCertReloadUnderLoad re-applies an HTTPS server's certificate through
// the admin API while keep-alive and one-connection-per-request clients
// keep sending requests: none fails, and after each update new handshakes
// present the new certificate.
func TestCertReloadUnderLoad(t *testing.T) {
	pki := newReloadPKI(t)
	g := newGateway(t)
	// A fixed port: an update on the same address keeps the listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	cert, key := pki.leaf(t, 100)
	apply(t, g, httpsServerYAML(port, cert, key)+"---\n"+staticPipeline("ok"))
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(g.AdminHandler())
	defer admin.Close()

	servedSerial := func() (int64, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.roots})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}

	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pki.roots},
			DisableKeepAlives: i%2 == 1,
			ForceAttemptHTTP2: i%4 == 0, // some keep-alive clients speak HTTP/2
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("https://" + addr + "/")
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || string(b) != "ok") {
						err = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
					}
				}
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitOK := func(n int64) {
		target := ok.Load() + n
		for deadline := time.Now().Add(30 * time.Second); ok.Load() < target; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("requests stalled at %d", ok.Load())
			}
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for serial := int64(101); serial <= 105; serial++ {
		waitOK(50)
		cert, key := pki.leaf(t, serial)
		req, _ := http.NewRequest(http.MethodPut, admin.URL+"/apis/v2/objects/server", strings.NewReader(httpsServerYAML(port, cert, key)))
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT server: %d %s", resp.StatusCode, body)
		}
		if got, err := servedSerial(); err != nil || got != serial {
			t.Fatalf("after the update a new handshake gets serial %d (%v), want %d", got, err, serial)
		}
	}
	waitOK(50)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during 5 certificate updates; first: %v", n, n+ok.Load(), firstErr)
	}
}
