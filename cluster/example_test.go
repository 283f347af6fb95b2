package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/cluster"
)

// Example starts a one-member cluster (the first primary of a new
// cluster), runs a Gateway on it and mounts both admin APIs. More members
// would set Join to this member's admin URL.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sluice-cluster-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	tlsConfig := exampleTLS() // in production: certificates from your own CA

	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	node, err := cluster.Open(ctx, cluster.Config{
		ID:        "m1",
		DataDir:   dir,
		RaftAddr:  "127.0.0.1:0",
		AdminURL:  "https://" + admin.Addr().String(),
		Bootstrap: true,
		TLS:       tlsConfig,
		Secret:    []byte("shared by every member, 16+ bytes"),
	})
	if err != nil {
		panic(err)
	}
	defer node.Close()
	gw, err := sluice.New(sluice.WithStore(node))
	if err != nil {
		panic(err)
	}
	defer gw.Shutdown(ctx)
	node.SetObjectStatus(func() any { return gw.Status() })

	mux := http.NewServeMux()
	for _, p := range cluster.AdminPaths {
		mux.Handle(p, node.AdminHandler())
	}
	mux.Handle("/", gw.AdminHandler())
	serverTLS := tlsConfig.Clone()
	serverTLS.ClientAuth = tls.VerifyClientCertIfGiven
	srv := &http.Server{Handler: mux}
	go srv.Serve(tls.NewListener(admin, serverTLS))
	defer srv.Close()
	if err := gw.Start(ctx); err != nil {
		panic(err)
	}

	// The commit waits until the member has elected itself leader.
	err = gw.ApplyYAML(ctx, strings.NewReader(`
kind: Pipeline
name: hello
filters:
  - name: answer
    kind: Mock
    rules:
      - body: hello
`))
	if err != nil {
		panic(err)
	}
	recs, rev, err := node.List(cluster.Linearizable(ctx))
	if err != nil {
		panic(err)
	}
	fmt.Println("revision", rev, "leader", node.Leader())
	for _, r := range recs {
		fmt.Println(r.Kind, r.Name, r.Revision)
	}
	// Output:
	// revision 1 leader m1
	// Pipeline hello 1
}

// exampleTLS makes a CA and a certificate for 127.0.0.1 signed by it.
func exampleTLS() *tls.Config {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool,
		ClientCAs:    pool,
	}
}
