package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/cluster"
	"github.com/sluicegw/sluice/gate"
)

// testCA signs the members' certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sluice test cluster CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a certificate for a member on loopback, good for both ends
// of a connection.
func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// faultNet is one member's network, which a test can cut: while cut, the
// member dials nothing, accepts nothing, and every connection it had is
// closed. It stands for a network partition around the member.
type faultNet struct {
	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newFaultNet() *faultNet { return &faultNet{conns: map[net.Conn]struct{}{}} }

var errPartitioned = errors.New("test: partitioned")

func (f *faultNet) Cut() {
	f.mu.Lock()
	f.cut = true
	conns := f.conns
	f.conns = map[net.Conn]struct{}{}
	f.mu.Unlock()
	for c := range conns {
		c.(*faultConn).Conn.Close()
	}
}

func (f *faultNet) Heal() {
	f.mu.Lock()
	f.cut = false
	f.mu.Unlock()
}

func (f *faultNet) track(c net.Conn) (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		c.Close()
		return nil, errPartitioned
	}
	fc := &faultConn{Conn: c, f: f}
	f.conns[fc] = struct{}{}
	return fc, nil
}

func (f *faultNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	cut := f.cut
	f.mu.Unlock()
	if cut {
		return nil, errPartitioned
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return f.track(c)
}

func (f *faultNet) Listen(ln net.Listener) net.Listener { return &faultListener{Listener: ln, f: f} }

type faultListener struct {
	net.Listener
	f *faultNet
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if fc, err := l.f.track(c); err == nil {
			return fc, nil
		}
	}
}

type faultConn struct {
	net.Conn
	f *faultNet
}

func (c *faultConn) Close() error {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}

// member is one in-process cluster member: a Node, a Gateway using it as
// its store, an admin server over mutual TLS serving both admin APIs, and
// the gateway's HTTPServer on its own loopback port.
type member struct {
	t        *testing.T
	id       string
	role     cluster.Role
	dir      string
	raftAddr string
	cert     tls.Certificate
	ca       *testCA
	secret   []byte
	net      *faultNet

	node     *cluster.Node
	gw       *sluice.Gateway
	srv      *http.Server
	adminURL string
	handler  atomic.Pointer[http.Handler]
}

func newMember(t *testing.T, ca *testCA, secret []byte, id string, role cluster.Role) *member {
	return &member{t: t, id: id, role: role, dir: t.TempDir(), cert: ca.issue(t, id), ca: ca, secret: secret, net: newFaultNet()}
}

func (m *member) tlsConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{m.cert}, RootCAs: m.ca.pool, ClientCAs: m.ca.pool}
}

// start opens the member (bootstrapping or joining as told if its data
// directory is new) and starts its gateway.
func (m *member) start(ctx context.Context, bootstrap bool, join ...string) error {
	addr := m.raftAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	rl, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	m.raftAddr = rl.Addr().String()
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rl.Close()
		return err
	}
	m.adminURL = "https://" + al.Addr().String()
	srvTLS := m.tlsConfig()
	srvTLS.ClientAuth = tls.VerifyClientCertIfGiven
	m.handler.Store(nil)
	m.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := m.handler.Load()
			if h == nil {
				http.Error(w, `{"code":503,"message":"starting"}`, http.StatusServiceUnavailable)
				return
			}
			(*h).ServeHTTP(w, r)
		}),
		ErrorLog: nil,
	}
	go m.srv.Serve(tls.NewListener(m.net.Listen(al), srvTLS))

	node, err := cluster.Open(ctx, cluster.Config{
		ID:                m.id,
		Role:              m.role,
		DataDir:           m.dir,
		Listener:          m.net.Listen(rl),
		AdminURL:          m.adminURL,
		Bootstrap:         bootstrap,
		Join:              join,
		TLS:               m.tlsConfig(),
		Secret:            m.secret,
		Dial:              m.net.Dial,
		HeartbeatInterval: 100 * time.Millisecond,
		SnapshotThreshold: 32,
		SnapshotInterval:  100 * time.Millisecond,
		TrailingLogs:      8,
	})
	if err != nil {
		m.srv.Close()
		return err
	}
	gw, err := sluice.New(sluice.WithStore(node), sluice.WithListenFuncs(func(network, _ string) (net.Listener, error) {
		return net.Listen(network, "127.0.0.1:0")
	}, nil))
	if err != nil {
		node.Close()
		m.srv.Close()
		return err
	}
	node.SetObjectStatus(func() any { return gw.Status() })
	mux := http.NewServeMux()
	for _, p := range cluster.AdminPaths {
		mux.Handle(p, node.AdminHandler())
	}
	mux.Handle("/", gw.AdminHandler())
	var h http.Handler = mux
	m.handler.Store(&h)
	if err := gw.Start(ctx); err != nil {
		gw.Shutdown(ctx)
		node.Close()
		m.srv.Close()
		return err
	}
	m.node, m.gw = node, gw
	return nil
}

// stop kills the member: its gateway, node and admin server stop; its
// data directory stays.
func (m *member) stop() {
	if m.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.gw.Shutdown(ctx); err != nil {
		m.t.Errorf("%s: gateway shutdown: %v", m.id, err)
	}
	if err := m.node.Close(); err != nil {
		m.t.Errorf("%s: node close: %v", m.id, err)
	}
	m.srv.Close()
	m.node, m.gw = nil, nil
}

// trafficURL is the base URL of the member's HTTPServer "server".
func (m *member) trafficURL() (string, error) {
	for _, o := range m.gw.Status().Objects {
		if st, ok := o.Status.(gate.Status); ok && o.Name == "server" && st.Address != "" {
			return "http://" + st.Address, nil
		}
	}
	return "", errors.New("the server reports no address")
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes, and returns how long it took.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get fetches url and returns the status and body.
func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// objectYAML is a pipeline answering body, and the server routing to it.
func objectYAML(pipeline, body string) string {
	return fmt.Sprintf(`kind: Pipeline
name: %s
filters:
  - name: answer
    kind: Mock
    rules:
      - body: %s
`, pipeline, body)
}

const serverYAML = `kind: HTTPServer
name: server
port: 10080
rules:
  - paths:
      - pathPrefix: /
        backend: api
`

func apply(ctx context.Context, gw *sluice.Gateway, docs ...string) error {
	return gw.ApplyYAML(ctx, strings.NewReader(strings.Join(docs, "---\n")))
}
