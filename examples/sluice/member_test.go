package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/cluster"
)

// memberPKI makes a CA and a loopback certificate signed by it, as a TLS
// config and as PEM files in dir (ca.pem, cert.pem, key.pem).
func memberPKI(t *testing.T, dir string) *tls.Config {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":   {Type: "CERTIFICATE", Bytes: caDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem":  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, RootCAs: pool}
}

// TestMemberList runs a one-member cluster with a gateway and its admin
// API on loopback, and lists the members as a table and as JSON.
func TestMemberList(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := "http://" + admin.Addr().String()
	node, err := cluster.Open(ctx, cluster.Config{
		ID: "m1", Name: "first", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", AdminURL: server,
		Bootstrap: true, TLS: memberPKI(t, t.TempDir()), Secret: []byte("a test cluster secret"),
		HeartbeatInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	gw, err := sluice.New(sluice.WithStore(node))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Shutdown(context.Background())
	node.SetObjectStatus(func() any { return gw.Status() })
	mux := http.NewServeMux()
	for _, p := range cluster.AdminPaths {
		mux.Handle(p, node.AdminHandler())
	}
	mux.Handle("/", gw.AdminHandler())
	srv := &http.Server{Handler: mux}
	go srv.Serve(admin)
	defer srv.Close()

	c := &cli{ctx: ctx, getenv: func(string) string { return "" }}
	list := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		c.stdout, c.stderr = &out, &errb
		code := c.exec(c.memberListCommand(), append([]string{"-server", server}, args...))
		return code, out.String(), errb.String()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errs := list()
		if code == 0 && strings.Contains(out, "m1 *") && strings.Contains(out, "Leader") && strings.Contains(out, "true") {
			mustContain(t, "the table", out, "ID", "ROLE", "STATE", "ALIVE", "first", "primary", server)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member list: exit %d\n%s%s", code, out, errs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, out, errs := list("-o", "json")
	var cs cluster.Status
	if code != 0 || json.Unmarshal([]byte(out), &cs) != nil || cs.Leader != "m1" || len(cs.Members) != 1 || cs.Members[0].Objects == nil {
		t.Errorf("member list -o json: exit %d %+v\n%s%s", code, cs, out, errs)
	}
	if code, out, _ := list("-o", "yaml"); code != 0 || !strings.Contains(out, "leader: m1") || !strings.Contains(out, "role: primary") {
		t.Errorf("member list -o yaml: exit %d\n%s", code, out)
	}
	if code, _, errs := list("extra"); code != exitUsage || !strings.Contains(errs, "want no arguments") {
		t.Errorf("member list extra: exit %d %s", code, errs)
	}
}

// TestMemberUsage: "sluice member" without a command is a usage error;
// with -h it prints the member commands.
func TestMemberUsage(t *testing.T) {
	var out, errb bytes.Buffer
	c := &cli{ctx: t.Context(), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	if code := c.memberMain(nil); code != exitUsage || !strings.Contains(errb.String(), "missing command") {
		t.Errorf("sluice member: exit %d, stderr %q", code, errb.String())
	}
	if code := c.memberMain([]string{"-h"}); code != exitOK || !strings.Contains(out.String(), "Usage: sluice member COMMAND") {
		t.Errorf("sluice member -h: exit %d, stdout %q", code, out.String())
	}
}

// TestClusterFlags starts three members as "sluice server" would in
// cluster mode, from flags: certificate files, a secret file, the first
// bootstrapping and the others joining through it. An object applied on
// the third reaches the first, and "member list" on the second lists all
// three. Bad cluster flags are usage errors naming the flag.
func TestClusterFlags(t *testing.T) {
	dir := t.TempDir()
	memberPKI(t, dir)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("a secret for the cluster flags test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &cli{ctx: ctx, stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}

	type running struct {
		admin string
		gw    *sluice.Gateway
	}
	var members []running
	for i, id := range []string{"m1", "m2", "m3"} {
		admin, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"-cluster-id", id, "-cluster-data-dir", filepath.Join(dir, id), "-cluster-raft", "127.0.0.1:0",
			"-cluster-ca", filepath.Join(dir, "ca.pem"), "-cluster-cert", filepath.Join(dir, "cert.pem"),
			"-cluster-key", filepath.Join(dir, "key.pem"), "-cluster-secret-file", secret}
		if i == 0 {
			args = append(args, "-cluster-bootstrap")
		} else {
			args = append(args, "-cluster-join", "http://"+members[0].admin)
		}
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		cf := addClusterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		node, err := cf.open(c, admin.Addr().String(), nil)
		if err != nil {
			admin.Close()
			t.Fatalf("%s: %v", id, err)
		}
		defer node.Close()
		gw, err := sluice.New(sluice.WithStore(node))
		if err != nil {
			t.Fatal(err)
		}
		defer gw.Shutdown(context.Background())
		node.SetObjectStatus(func() any { return gw.Status() })
		srv := &http.Server{Handler: mountCluster(node, gw.AdminHandler())}
		go srv.Serve(admin)
		defer srv.Close()
		if err := gw.Start(ctx); err != nil {
			t.Fatal(err)
		}
		members = append(members, running{admin: admin.Addr().String(), gw: gw})
	}

	err := members[2].gw.ApplyYAML(ctx, strings.NewReader("kind: Pipeline\nname: p\nfilters:\n  - name: m\n    kind: Mock\n    rules:\n      - body: hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, replicated := members[0].gw.Get("Pipeline", "p")
		var out bytes.Buffer
		c.stdout = &out
		code := c.exec(c.memberListCommand(), []string{"-server", "http://" + members[1].admin, "-o", "json"})
		var cs cluster.Status
		alive := 0
		if code == 0 && json.Unmarshal(out.Bytes(), &cs) == nil {
			for _, m := range cs.Members {
				if m.Alive {
					alive++
				}
			}
		}
		if replicated && alive == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicated %v, member list (exit %d): %s", replicated, code, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, tc := range []struct{ flag, want string }{
		{"-cluster-data-dir", "-cluster-data-dir"},
		{"-cluster-ca", "-cluster-ca"},
		{"-cluster-secret-file", "-cluster-secret-file or $SLUICE_CLUSTER_SECRET"},
	} {
		args := []string{"-cluster-id", "x", "-cluster-data-dir", filepath.Join(dir, "x"), "-cluster-bootstrap",
			"-cluster-ca", filepath.Join(dir, "ca.pem"), "-cluster-cert", filepath.Join(dir, "cert.pem"),
			"-cluster-key", filepath.Join(dir, "key.pem"), "-cluster-secret-file", secret}
		for i := range args {
			if args[i] == tc.flag {
				args = append(args[:i:i], args[i+2:]...)
				break
			}
		}
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		cf := addClusterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		node, err := cf.open(c, "127.0.0.1:1", nil)
		var ue *usageError
		if err == nil {
			node.Close()
		}
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("without %s: %v, want a usage error naming it", tc.flag, err)
		}
	}
}
