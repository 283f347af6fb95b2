package proxy

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Transport tuning that the spec does not expose.
const (
	dialTimeout           = 5 * time.Second
	dialKeepAlive         = 30 * time.Second
	idleConnTimeout       = 90 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	expectContinueTimeout = 1 * time.Second
)

// transportSettings are what a Proxy's own transport is built from. Two
// generations with equal settings can share one transport. Time limits are
// not among them: they are contexts on Env.Clock, set per request.
type transportSettings struct {
	maxIdleConns        int
	maxIdleConnsPerHost int
}

func settingsOf(s *Spec) transportSettings {
	ts := transportSettings{maxIdleConns: s.MaxIdleConns, maxIdleConnsPerHost: s.MaxIdleConnsPerHost}
	if ts.maxIdleConns == 0 {
		ts.maxIdleConns = DefaultMaxIdleConns
	}
	if ts.maxIdleConnsPerHost == 0 {
		ts.maxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	return ts
}

// transport is the round tripper of one or more generations of a Proxy.
// When the Proxy built it (own is set), the last Proxy to release it closes
// its idle connections; a transport handed in by the Env is never closed.
type transport struct {
	rt       http.RoundTripper
	own      *http.Transport // nil for the Env's transport
	settings transportSettings
	refs     atomic.Int64
}

func newTransport(rt http.RoundTripper, ts transportSettings) *transport {
	t := &transport{rt: rt, settings: ts}
	if rt == nil {
		t.own = newHTTPTransport(ts)
		t.rt = t.own
	}
	t.refs.Store(1)
	return t
}

// newHTTPTransport returns a transport tuned for a gateway: large idle pools,
// HTTP/2 when a TLS server offers it, a bounded connect time, and no
// transparent decompression (the client's Accept-Encoding is passed on as
// is). It does not use the HTTP_PROXY environment variables.
func newHTTPTransport(ts transportSettings) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
	return &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConns:          ts.maxIdleConns,
		MaxIdleConnsPerHost:   ts.maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ExpectContinueTimeout: expectContinueTimeout,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
	}
}

// shareable reports whether a Proxy using t may take prev over instead:
// both were built by their Proxies, with the same settings.
func (t *transport) shareable(prev *transport) bool {
	return t != prev && t.own != nil && prev.own != nil && t.settings == prev.settings
}

// acquire adds a user of t; it fails when t has been released by all its
// users already.
func (t *transport) acquire() bool {
	for {
		n := t.refs.Load()
		if n <= 0 {
			return false
		}
		if t.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a user of t; the last one closes the idle connections of
// an own transport.
func (t *transport) release() {
	if t.refs.Add(-1) == 0 && t.own != nil {
		t.own.CloseIdleConnections()
	}
}
