package pipeline_test

// Tests of a 101 Switching Protocols response: WriteResponse joins the
// client's connection (hijacked from a real httptest server) to the body,
// which stands for the server's end of an upgraded connection. The body is
// one end of a net.Pipe, the test playing the server at the other end: a
// real upgraded backend connection needs a proxy, which upgrade_test.go at
// the module root drives end to end.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// dialUpgrade sends an upgrade request to addr and returns the connection
// and the response it got.
func dialUpgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// "early" follows the request at once: it must reach the server
	// even though net/http may have buffered it with the request.
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nearly")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

func TestWriteResponseSwitchesProtocols(t *testing.T) {
	client, server := net.Pipe() // server: the test as the backend
	defer server.Close()
	done := make(chan error, 1)
	srv := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := &http.Response{
			StatusCode: http.StatusSwitchingProtocols,
			Header: http.Header{
				"Upgrade":    {"test"},
				"Connection": {"Upgrade, X-Hop"},
				"X-Hop":      {"dropped"},
				"X-Kept":     {"yes"},
			},
			Body: client,
		}
		done <- pipeline.WriteResponse(w, resp)
	}))
	conn, br, resp := dialUpgrade(t, srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if got := resp.Header.Get("Upgrade"); got != "test" {
		t.Errorf("Upgrade %q, want test", got)
	}
	if got := resp.Header.Get("Connection"); !strings.EqualFold(got, "upgrade") {
		t.Errorf("Connection %q, want Upgrade", got)
	}
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("header %v: want X-Kept and no X-Hop", resp.Header)
	}

	server.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "early" {
		t.Fatalf("server read %q, %v; want early", buf, err)
	}
	io.WriteString(conn, "ping")
	if _, err := io.ReadFull(server, buf[:4]); err != nil || string(buf[:4]) != "ping" {
		t.Fatalf("server read %q, %v; want ping", buf[:4], err)
	}
	io.WriteString(server, "pong")
	if _, err := io.ReadFull(br, buf[:4]); err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("client read %q, %v; want pong", buf[:4], err)
	}

	// The client closes: both directions end, the server's end is closed.
	conn.Close()
	if _, err := server.Read(buf); err == nil {
		t.Error("server end still open after the client closed")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Logf("WriteResponse: %v", err) // a closed connection is how it ends
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteResponse did not return after the client closed")
	}
}

func TestWriteResponseSwitchServerCloses(t *testing.T) {
	client, server := net.Pipe()
	done := make(chan error, 1)
	srv := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done <- pipeline.WriteResponse(w, &http.Response{
			StatusCode: http.StatusSwitchingProtocols,
			Header:     http.Header{"Upgrade": {"test"}, "Connection": {"Upgrade"}},
			Body:       client,
		})
	}))
	_, br, resp := dialUpgrade(t, srv.Listener.Addr().String())
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	server.Close()
	if _, err := br.ReadByte(); err == nil {
		t.Error("client connection still open after the server closed")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WriteResponse did not return after the server closed")
	}
}

// A 101 through Pipeline.ServeHTTP: with the upgraded connection as its
// body it is served; without one it stays a 500.
func TestPipelineSwitchingProtocols(t *testing.T) {
	t.Run("ReadWriteCloser body", func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		up := funcKind("Up", func(c *pipeline.Context) pipeline.Result {
			c.SetResponse(&http.Response{
				StatusCode: http.StatusSwitchingProtocols,
				Header:     http.Header{"Upgrade": {"test"}, "Connection": {"Upgrade"}},
				Body:       client,
			})
			return pipeline.Continue
		})
		srv := serveTest(t, []pipeline.Kind{up}, "filters: [{name: u, kind: Up}]\n")
		conn, br, resp := dialUpgrade(t, srv.Listener.Addr().String())
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		server.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "early" {
			t.Fatalf("server read %q, %v; want early", buf, err)
		}
		io.WriteString(server, "pong")
		if _, err := io.ReadFull(br, buf[:4]); err != nil || string(buf[:4]) != "pong" {
			t.Fatalf("client read %q, %v; want pong", buf[:4], err)
		}
		conn.Close()
		if _, err := server.Read(buf); err == nil {
			t.Error("server end still open after the client closed")
		}
	})
	t.Run("plain body", func(t *testing.T) {
		up := funcKind("Up", func(c *pipeline.Context) pipeline.Result {
			c.SetResponse(&http.Response{
				StatusCode: http.StatusSwitchingProtocols,
				Header:     http.Header{"Upgrade": {"test"}, "Connection": {"Upgrade"}},
				Body:       io.NopCloser(strings.NewReader("x")),
			})
			return pipeline.Continue
		})
		srv := serveTest(t, []pipeline.Kind{up}, "filters: [{name: u, kind: Up}]\n")
		_, _, resp := dialUpgrade(t, srv.Listener.Addr().String())
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("status %d, want 500", resp.StatusCode)
		}
	})
}
