package gate

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2cUpgrader serves the HTTP/1.1 Upgrade to h2c (RFC 7540 §3.2) on one
// cleartext listener, for the routes that allow it (allowH2CUpgrade). The
// upgraded connections are hijacked from net/http, so http.Server.Shutdown
// does not see them: the upgrader tracks them and drains them itself.
//
// The Upgrade was removed from HTTP/2 by RFC 9113 and net/http does not
// serve it; golang.org/x/net/http2, whose Server API is deprecated in
// favour of net/http's, is the only implementation of it, hence the
// lint:ignore directives below.
type h2cUpgrader struct {
	//lint:ignore SA1019 net/http has no API for the h2c Upgrade (an UpgradeRequest served as stream 1); x/net/http2 is the only implementation.
	h2 *http2.Server
	// shadow is never served: http2.ConfigureServer registers the
	// graceful shutdown of h2's connections (GOAWAY, then close once
	// their streams are done) on it, and shutdown triggers it.
	shadow *http.Server

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newH2CUpgrader(ls listenerSettings) *h2cUpgrader {
	u := &h2cUpgrader{
		//lint:ignore SA1019 net/http has no API for the h2c Upgrade (an UpgradeRequest served as stream 1); x/net/http2 is the only implementation.
		h2:     &http2.Server{IdleTimeout: ls.idleTimeout, MaxConcurrentStreams: uint32(ls.maxStreams)},
		shadow: &http.Server{},
		conns:  map[net.Conn]struct{}{},
	}
	// The only error is about a TLS cipher suite list; shadow has none.
	//lint:ignore SA1019 net/http has no API for the h2c Upgrade (an UpgradeRequest served as stream 1); x/net/http2 is the only implementation.
	_ = http2.ConfigureServer(u.shadow, u.h2)
	return u
}

// wantsH2CUpgrade reports whether r asks for an upgrade to h2c that the
// server can take: HTTP/1.1 without TLS and without a body (a request
// with a body is served as HTTP/1.1 rather than buffering it), with
// "Upgrade: h2c", "Connection: HTTP2-Settings" and exactly one
// HTTP2-Settings header.
func wantsH2CUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor == 1 && r.TLS == nil && r.ContentLength == 0 &&
		hasToken(r.Header["Upgrade"], "h2c") && hasToken(r.Header["Connection"], "http2-settings") &&
		len(r.Header["Http2-Settings"]) == 1
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serve upgrades the connection of r and serves it as HTTP/2 with h, the
// request itself as stream 1. It reports false, having written nothing,
// when it did not upgrade (bad HTTP2-Settings, shutting down, the writer
// cannot be hijacked); the caller then serves r as HTTP/1.1.
func (u *h2cUpgrader) serve(w http.ResponseWriter, r *http.Request, base *http.Server, h http.Handler) bool {
	settings, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(r.Header.Get("Http2-Settings"), "="))
	if err != nil || len(settings)%6 != 0 {
		return false
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return false
	}
	u.wg.Add(1)
	u.mu.Unlock()
	defer u.wg.Done()

	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	// The deadlines net/http set for the HTTP/1.1 request must not cut
	// the HTTP/2 connection; http2.Server keeps its own.
	conn.SetDeadline(time.Time{})
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	if err := rw.Flush(); err != nil {
		conn.Close()
		return true
	}
	bc := &bufConn{Conn: conn, r: rw.Reader}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		conn.Close()
		return true
	}
	u.conns[bc] = struct{}{}
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.conns, bc)
		u.mu.Unlock()
		bc.Close()
	}()

	// Stream 1 is the request, now an HTTP/2 one: without the upgrade's
	// hop-by-hop headers, so that it is not upgraded again.
	up := r.Clone(context.WithoutCancel(r.Context()))
	up.Proto, up.ProtoMajor, up.ProtoMinor = "HTTP/2.0", 2, 0
	up.Body = http.NoBody
	stripH2CUpgrade(up.Header)
	up.Header.Del("Connection")
	up.Close = false
	//lint:ignore SA1019 net/http has no API for the h2c Upgrade (an UpgradeRequest served as stream 1); x/net/http2 is the only implementation.
	u.h2.ServeConn(bc, &http2.ServeConnOpts{
		Context:        up.Context(),
		BaseConfig:     base,
		Handler:        h,
		UpgradeRequest: up,
		Settings:       settings,
	})
	return true
}

// shutdown stops upgrading, asks the upgraded connections to finish
// (GOAWAY) and waits for them; when ctx ends first it closes them.
func (u *h2cUpgrader) shutdown(ctx context.Context) {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	u.shadow.Shutdown(ctx) // runs the graceful shutdown hook of h2
	done := make(chan struct{})
	go func() {
		u.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	u.mu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	<-done
}

// bufConn reads first what net/http had buffered from the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
