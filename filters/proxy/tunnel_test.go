package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
)

// TestCloseEndsTunnels: closing the Proxy (as a gateway's shutdown does)
// closes the upgraded connections it opened: the client's connection
// ends, the server's too, and no goroutine is left. It is not parallel,
// so no other test's goroutines come and go meanwhile.
func TestCloseEndsTunnels(t *testing.T) {
	ended := make(chan struct{}, 1)
	be := httptest.NewServer(switcher(false, ended))
	defer be.Close()
	pl, err := buildPipeline(nil, proxyPipeline(be.URL, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What a gate does on a route with allowUpgrade.
		pl.ServeHTTP(w, pipeline.WithRequestInfo(r, &pipeline.RequestInfo{UpgradeAllowed: true}))
	}))
	defer gw.Close()
	ignore := goleak.IgnoreCurrent()

	conn, err := net.Dial("tcp", gw.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	f, _ := pl.Filter("proxy")
	if n := f.(pipeline.Statuser).Status().(*proxy.Status).Tunnels; n != 1 {
		t.Fatalf("%d tunnels open, want 1", n)
	}

	f.(pipeline.Closer).Close()

	conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound for a broken build, not a timing assertion
	if n, err := br.Read(buf); err != io.EOF {
		t.Fatalf("client read %d bytes, %v after Close; want EOF", n, err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's side of the tunnel is still open")
	}
	if n := f.(pipeline.Statuser).Status().(*proxy.Status).Tunnels; n != 0 {
		t.Errorf("%d tunnels open after Close", n)
	}
	conn.Close()
	goleak.VerifyNone(t, ignore)
}
