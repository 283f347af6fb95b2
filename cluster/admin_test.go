package cluster_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/cluster"
)

// TestConfigErrors: a bad Config is refused with an error that names the
// field.
func TestConfigErrors(t *testing.T) {
	ca := newCA(t)
	good := func() cluster.Config {
		return cluster.Config{
			ID: "m1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", AdminURL: "https://127.0.0.1:1",
			Bootstrap: true, Secret: []byte("0123456789abcdef"),
			TLS: &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "m1")}, RootCAs: ca.pool},
		}
	}
	for _, tc := range []struct {
		field  string
		change func(*cluster.Config)
	}{
		{"ID", func(c *cluster.Config) { c.ID = "" }},
		{"ID", func(c *cluster.Config) { c.ID = "a b" }},
		{"Role", func(c *cluster.Config) { c.Role = "leader" }},
		{"DataDir", func(c *cluster.Config) { c.DataDir = "" }},
		{"RaftAddr", func(c *cluster.Config) { c.RaftAddr = "" }},
		{"AdminURL", func(c *cluster.Config) { c.AdminURL = "127.0.0.1:1" }},
		{"Bootstrap", func(c *cluster.Config) { c.Role = cluster.Secondary }},
		{"Join[0]", func(c *cluster.Config) { c.Bootstrap = false; c.Join = []string{"nope"} }},
		{"TLS", func(c *cluster.Config) { c.TLS = nil }},
		{"TLS.Certificates", func(c *cluster.Config) { c.TLS = &tls.Config{RootCAs: ca.pool} }},
		{"TLS.RootCAs", func(c *cluster.Config) { c.TLS.RootCAs = nil }},
		{"Secret", func(c *cluster.Config) { c.Secret = []byte("short") }},
		{"LeaderLeaseTimeout", func(c *cluster.Config) { c.LeaderLeaseTimeout = time.Second }},
		{"ElectionTimeout", func(c *cluster.Config) { c.ElectionTimeout = 100 * time.Millisecond }},
		{"HeartbeatInterval", func(c *cluster.Config) { c.HeartbeatInterval = -1 }},
		{"Bootstrap or Join", func(c *cluster.Config) { c.Bootstrap = false }},
		{"AdvertiseAddr", func(c *cluster.Config) { c.AdvertiseAddr = "0.0.0.0:2380" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := good()
			tc.change(&c)
			n, err := cluster.Open(context.Background(), c)
			if err == nil {
				n.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, cluster.ErrBadConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q, want ErrBadConfig naming %s", err, tc.field)
			}
		})
	}
}

// sign makes the Sluice-Cluster-Auth header as the package documents it,
// so that the test can send hostile but signed requests.
func sign(secret []byte, method, path string, body []byte, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%s\n%s\n%s\n%x", method, path, ts, sum)
	return ts + ":" + hex.EncodeToString(m.Sum(nil))
}

// TestAdminSecurity: the cluster's admin API refuses callers without the
// secret, stale signatures and hostile bodies with defined 4xx answers;
// members with another secret or another CA cannot join; a raft
// connection without the secret's proof or a certificate is dropped.
func TestAdminSecurity(t *testing.T) {
	ca := newCA(t)
	secret := []byte("the right cluster secret")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newMember(t, ca, secret, "m1", cluster.Primary)
	if err := m.start(ctx, true); err != nil {
		t.Fatal(err)
	}
	defer m.stop()
	eventually(t, 5*time.Second, "a leader", func() error {
		if !m.node.IsLeader() {
			return errors.New("not yet")
		}
		return nil
	})

	withCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: m.tlsConfig()}}
	defer withCert.CloseIdleConnections()
	do := func(method, path, auth string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, m.adminURL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Sluice-Cluster-Auth", auth)
		}
		resp, err := withCert.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	join := "/apis/v2/cluster/join"
	now := time.Now()
	for _, tc := range []struct {
		name, method, path, auth string
		body                     string
		want                     int
	}{
		{"unsigned join", "POST", join, "", `{"id":"x"}`, 401},
		{"wrong secret", "POST", join, sign([]byte("another secret!!"), "POST", join, []byte(`{}`), now), `{}`, 401},
		{"stale signature", "POST", join, sign(secret, "POST", join, []byte(`{}`), now.Add(-time.Hour)), `{}`, 401},
		{"body changed after signing", "POST", join, sign(secret, "POST", join, []byte(`{}`), now), `{"id":"evil"}`, 401},
		{"garbage header", "POST", join, "zz:zz", `{}`, 401},
		{"not JSON", "POST", join, sign(secret, "POST", join, []byte(`{`), now), `{`, 400},
		{"unknown field", "POST", join, sign(secret, "POST", join, []byte(`{"idd":"x"}`), now), `{"idd":"x"}`, 400},
		{"bad member", "POST", join, sign(secret, "POST", join, []byte(`{"id":"x y","role":"primary","raftAddress":"127.0.0.1:1"}`), now), `{"id":"x y","role":"primary","raftAddress":"127.0.0.1:1"}`, 400},
		{"bad role", "POST", join, sign(secret, "POST", join, []byte(`{"id":"x","role":"boss","raftAddress":"127.0.0.1:1"}`), now), `{"id":"x","role":"boss","raftAddress":"127.0.0.1:1"}`, 400},
		{"leave without id", "POST", "/apis/v2/cluster/leave", sign(secret, "POST", "/apis/v2/cluster/leave", []byte(`{}`), now), `{}`, 400},
		{"empty commit", "POST", "/apis/v2/cluster/commit", sign(secret, "POST", "/apis/v2/cluster/commit", []byte(`{"id":"1","ops":[]}`), now), `{"id":"1","ops":[]}`, 400},
		{"unknown endpoint", "GET", "/apis/v2/cluster/nothing", "", "", 404},
		{"members from loopback", "GET", "/apis/v2/cluster/members", "", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(tc.method, tc.path, tc.auth, []byte(tc.body))
			if code != tc.want || !strings.Contains(body, `"code"`) && code != 200 {
				t.Errorf("%d %s, want %d with a JSON error", code, body, tc.want)
			}
		})
	}

	t.Run("member with another secret", func(t *testing.T) {
		x := newMember(t, ca, []byte("a different secret"), "x1", cluster.Primary)
		jctx, jcancel := context.WithTimeout(ctx, 3*time.Second)
		defer jcancel()
		if err := x.start(jctx, false, m.adminURL); err == nil {
			x.stop()
			t.Fatal("joined with the wrong secret")
		}
	})
	t.Run("member from another CA", func(t *testing.T) {
		x := newMember(t, newCA(t), secret, "x2", cluster.Primary)
		jctx, jcancel := context.WithTimeout(ctx, time.Second)
		defer jcancel()
		if err := x.start(jctx, false, m.adminURL); err == nil {
			x.stop()
			t.Fatal("joined with a certificate of another CA")
		}
	})

	t.Run("raft connection without the proof", func(t *testing.T) {
		conn, err := tls.Dial("tcp", m.raftAddr, m.tlsConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(bytes.Repeat([]byte{1}, 32))
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read after a wrong proof: %v, want the connection closed", err)
		}
	})
	t.Run("raft connection without a certificate", func(t *testing.T) {
		conn, err := tls.Dial("tcp", m.raftAddr, &tls.Config{RootCAs: ca.pool})
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a raft connection without a client certificate: %v, want refused", err)
		}
	})
}
