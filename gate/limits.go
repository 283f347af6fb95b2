package gate

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// listenerSettings are the settings fixed when a listener is created: they
// are fields of the running http.Server (or the listener itself: TLS or
// not), which
// cannot change under it without a race. A later generation with other
// settings on the same address keeps the running ones; Status reports
// PendingRestart until the listener is recreated.
type listenerSettings struct {
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	maxHeaderBytes, maxConnections, maxStreams                int
	https, h2c, http3                                         bool
}

// listenerSettings resolves the spec's listener-level settings, defaults
// included.
func (s *Spec) listenerSettings() listenerSettings {
	ls := listenerSettings{
		readHeaderTimeout: s.ReadHeaderTimeout,
		readTimeout:       s.ReadTimeout,
		writeTimeout:      s.WriteTimeout,
		idleTimeout:       s.KeepAliveTimeout,
		maxHeaderBytes:    s.MaxHeaderBytes,
		maxConnections:    s.MaxConnections,
		https:             s.HTTPS,
		h2c:               s.H2C,
		http3:             s.HTTP3 && s.HTTPS,
		maxStreams:        s.MaxConcurrentStreams,
	}
	if ls.maxStreams == 0 {
		ls.maxStreams = DefaultMaxConcurrentStreams
	}
	if ls.readHeaderTimeout == 0 {
		ls.readHeaderTimeout = DefaultReadHeaderTimeout
	}
	if ls.idleTimeout == 0 {
		ls.idleTimeout = DefaultIdleTimeout
	}
	if ls.maxHeaderBytes == 0 {
		ls.maxHeaderBytes = DefaultMaxHeaderBytes
	}
	return ls
}

// protocols returns the protocols the listener's http.Server serves:
// HTTP/1.1 always; HTTP/2 over TLS (whether a handshake negotiates it is up
// to the generation's ALPN list, see Spec.HTTP2); HTTP/2 with prior
// knowledge on a cleartext listener with h2c.
func (ls listenerSettings) protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(ls.https)
	p.SetUnencryptedHTTP2(ls.h2c && !ls.https)
	return p
}

// http2Config returns the HTTP/2 settings of the listener's http.Server.
func (ls listenerSettings) http2Config() *http.HTTP2Config {
	return &http.HTTP2Config{MaxConcurrentStreams: ls.maxStreams}
}

// maxBody resolves the body limit of a path: the path's own wins over the
// server's; 0 in the result means no limit.
func maxBody(server, path int64) int64 {
	n := server
	if path != 0 {
		n = path
	}
	if n < 0 {
		return 0
	}
	return n
}

// limitListener accepts at most cap(sem) connections at once. Accept waits
// for one to close before it accepts another, so that connections beyond
// the limit wait in the kernel's backlog instead of being refused.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.closed) })
	return err
}

// limitConn gives its slot back when it is closed, once.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

var _ net.Listener = (*limitListener)(nil)
