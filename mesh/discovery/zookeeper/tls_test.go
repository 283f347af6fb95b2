package zookeeper_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery/discoverytest"
	"github.com/sluicegw/sluice/mesh/discovery/zookeeper"
	"github.com/sluicegw/sluice/pipeline"
)

// tlsFront terminates TLS with a generated certificate for 127.0.0.1 and
// forwards each connection to a ZooKeeper's plain port, standing in for
// ZooKeeper's secureClientPort (whose Netty setup Debian's package does
// not ship).
type tlsFront struct {
	ln     net.Listener
	caFile string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newTLSFront(t *testing.T, target string) *tlsFront {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "zk"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	f := &tlsFront{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	f.ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	f.wg.Go(func() {
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			f.wg.Go(func() { io.Copy(up, c); up.Close() })
			f.wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
	t.Cleanup(f.close)
	return f
}

func (f *tlsFront) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// TestTLS reads a ZooKeeper through TLS, verifying the server against
// the spec's caFile.
func TestTLS(t *testing.T) {
	srv := startZooKeeper(t)
	c := srv.conn(t)
	u := discoverytest.NewUpstream(t, "a")
	register(t, c, u, "")
	front := newTLSFront(t, srv.addr)

	obj, err := zookeeper.Kind.Build(sluice.Env{Name: "reg"}, sluice.NewSpec(zookeeper.KindName, "reg", map[string]any{
		"zkservices": []string{front.ln.Addr().String()},
		"tls":        map[string]any{"caFile": front.caFile},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	reg := obj.(pipeline.ServiceRegistry)
	ch := make(chan struct{}, 10)
	stop := reg.Watch("orders", func() { ch <- struct{}{} })
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); obj.(sluice.Controller).Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("no sync through TLS")
	}
	inst, err := reg.Instances("orders")
	if err != nil || len(inst) != 1 || inst[0].Port != u.Port {
		t.Fatalf("instances %v, %v", inst, err)
	}
}
