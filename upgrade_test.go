package sluice_test

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// wsBackend is a WebSocket-like echo server written with net/http's
// Hijack: it does the RFC 6455 opening handshake (Upgrade: websocket,
// Sec-WebSocket-Accept from the key) and then echoes raw bytes, without
// framing, which is all a proxy has to carry. Other requests get 200
// "plain".
type wsBackend struct {
	mu      sync.Mutex
	headers []http.Header // what each request carried
	closed  chan struct{} // one value per upgraded connection that ended
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func (b *wsBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.headers = append(b.headers, r.Header.Clone())
	b.mu.Unlock()
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		io.WriteString(w, "plain")
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer func() {
		conn.Close()
		b.closed <- struct{}{}
	}()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + wsAccept(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n")
	if brw.Flush() != nil {
		return
	}
	io.Copy(conn, brw.Reader) // echo until the other side closes
}

func (b *wsBackend) lastHeader() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.headers) == 0 {
		return nil
	}
	return b.headers[len(b.headers)-1]
}

// wsHandshake sends a WebSocket opening handshake for path to addr over
// a raw TCP connection.
func wsHandshake(t *testing.T, addr, path, key string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

func TestWebSocketThroughGateway(t *testing.T) {
	be := &wsBackend{closed: make(chan struct{}, 4)}
	backend := httptest.NewServer(be)
	t.Cleanup(backend.Close)

	g := newGateway(t)
	apply(t, g, `
kind: HTTPServer
name: server
port: 0
address: 127.0.0.1
rules:
  - paths:
    - path: /ws
      allowUpgrade: true
      backend: proxy
    - path: /plain
      backend: proxy
---
kind: Pipeline
name: proxy
filters:
  - name: proxy
    kind: Proxy
    pools:
    - servers:
      - url: `+backend.URL+`
      timeout: 1s
`)
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := serverAddr(t, g, "server")

	t.Run("allowed", func(t *testing.T) {
		const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 §1.3
		conn, br, resp := wsHandshake(t, addr, "/ws", key)
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		if got, want := resp.Header.Get("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; got != want {
			t.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
		}
		if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
			t.Errorf("response header %v: want Upgrade: websocket, Connection: Upgrade", resp.Header)
		}
		if h := be.lastHeader(); h.Get("Sec-WebSocket-Key") != key || h.Get("X-Forwarded-For") == "" {
			t.Errorf("backend saw %v", h)
		}
		// Long enough to wait out the pool's 1s timeout: it bounds the
		// handshake, not the connection.
		time.Sleep(1200 * time.Millisecond)
		for _, msg := range []string{"hello", strings.Repeat("x", 100<<10)} {
			if _, err := io.WriteString(conn, msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
				t.Fatalf("echo of %d bytes: %v", len(msg), err)
			}
		}
		conn.Close()
		select {
		case <-be.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("backend connection not closed after the client closed")
		}
	})

	t.Run("not allowed", func(t *testing.T) {
		_, _, resp := wsHandshake(t, addr, "/plain", "dGhlIHNhbXBsZSBub25jZQ==")
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "plain" {
			t.Errorf("got %d %q, want 200 plain", resp.StatusCode, body)
		}
		if h := be.lastHeader(); h.Get("Upgrade") != "" || strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade") {
			t.Errorf("backend saw the offer to upgrade: %v", h)
		}
	})
}
