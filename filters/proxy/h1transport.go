package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// h1Transport is a lean HTTP/1.1 client for cleartext backends, the
// Proxy's default for http:// servers. http.Transport serves each
// connection with two goroutines of its own and hands every request and
// response between them and the caller over channels; on a busy gateway
// those hand-offs and the scheduling they cause are a large share of the
// cost of a proxied request. Here the caller's goroutine writes the request
// and reads the response head itself, on a pooled keep-alive connection;
// the response body is read by whoever reads it, and its end (EOF) puts
// the connection back in the pool. Parsing is net/http's
// (http.ReadResponse), so responses are framed exactly as http.Transport
// frames them.
//
// It takes only what it serves well: plain HTTP/1.1 requests with no body,
// or a body of known length. Everything else — unknown-length (chunked)
// bodies, Expect: 100-continue, Upgrades, https — goes to the fallback.
//
// A connection found dead when it is reused (the server closed it while it
// was idle: the write or the first read fails with nothing received) is
// retried once on a new connection when the request can be sent again (no
// body, or one the proxy buffered, and an idempotent method), as
// http.Transport does. Nothing runs in the background: idle connections
// are checked for age when taken, and Close closes them.
type h1Transport struct {
	dialer            net.Dialer
	fallback          http.RoundTripper
	maxIdlePerHost    int
	idleTimeout       time.Duration
	respHeaderTimeout time.Duration
	maxHeaderBytes    int64

	mu     sync.Mutex
	idle   map[string][]*h1Conn // by host:port; the last is the most recent
	closed bool
}

// h1MaxResponseHeaderBytes bounds a response head (status line and
// headers) from a backend.
const h1MaxResponseHeaderBytes = 1 << 20

func newH1Transport(ts transportSettings, fallback http.RoundTripper) *h1Transport {
	return &h1Transport{
		dialer:            net.Dialer{Timeout: ts.connectTimeout, KeepAlive: dialKeepAlive},
		fallback:          fallback,
		maxIdlePerHost:    ts.maxIdleConnsPerHost,
		idleTimeout:       idleConnTimeout,
		respHeaderTimeout: ts.responseHeaderTimeout,
		maxHeaderBytes:    h1MaxResponseHeaderBytes,
		idle:              map[string][]*h1Conn{},
	}
}

// h1Conn is one keep-alive connection to a backend.
type h1Conn struct {
	t      *h1Transport
	key    string
	nc     net.Conn
	lr     limitedConn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
}

// limitedConn reads from the connection, at most n bytes while n >= 0:
// it bounds a response head.
type limitedConn struct {
	nc net.Conn
	n  int64
}

var errHeaderTooLarge = errors.New("proxy: response headers too large")

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.nc.Read(p)
	}
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.nc.Read(p)
	l.n -= int64(n)
	return n, err
}

// serves reports whether the lean path takes req.
func (t *h1Transport) serves(req *http.Request) bool {
	if req.URL.Scheme != "http" {
		return false
	}
	if req.ContentLength < 0 || req.ContentLength == 0 && req.Body != nil && req.Body != http.NoBody {
		return false // a body of unknown length: chunked
	}
	if len(req.Trailer) > 0 {
		return false
	}
	if _, ok := req.Header["Expect"]; ok {
		return false
	}
	if _, ok := req.Header["Upgrade"]; ok {
		return false
	}
	return true
}

// RoundTrip sends req and returns the response head; the body streams from
// the connection. Informational responses go to the request context's
// httptrace.ClientTrace, as with http.Transport.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.serves(req) {
		return t.fallback.RoundTrip(req)
	}
	return t.roundTripWith(req, nil)
}

// roundTripWith is RoundTrip for a request that serves takes; with c set,
// informational responses are written to c's client directly instead.
func (t *h1Transport) roundTripWith(req *http.Request, c *pipeline.Context) (*http.Response, error) {
	ctx := req.Context()
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		conn, err := t.get(ctx, addr)
		if err != nil {
			return nil, err
		}
		resp, err := conn.roundTrip(req, c)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("proxy: %w (%v)", context.Cause(ctx), err)
		}
		var stale *staleConnError
		if attempt > 0 || !errors.As(err, &stale) || !replayable(req) {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			r2 := *req
			r2.Body = body
			req = &r2
		}
	}
}

// replayable reports whether req may be sent again after a reused
// connection turned out dead: its body can be produced again and its
// method is idempotent.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// staleConnError is a failure on a reused connection before any byte of
// the response arrived: most likely the server had closed it.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return "proxy: reused connection failed: " + e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

// get takes an idle connection to addr that is young enough, or dials one.
func (t *h1Transport) get(ctx context.Context, addr string) (*h1Conn, error) {
	now := time.Now()
	t.mu.Lock()
	for conns := t.idle[addr]; len(conns) > 0; conns = t.idle[addr] {
		c := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		t.idle[addr] = conns[:len(conns)-1]
		if now.Sub(c.idleAt) < t.idleTimeout {
			t.mu.Unlock()
			c.reused = true
			return c, nil
		}
		c.nc.Close()
	}
	t.mu.Unlock()
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{t: t, key: addr, nc: nc}
	c.lr.nc = nc
	c.lr.n = -1
	c.br = bufio.NewReaderSize(&c.lr, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	return c, nil
}

// put returns c to the idle pool, or closes it when the pool is full or
// closed.
func (t *h1Transport) put(c *h1Conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	if !t.closed && len(t.idle[c.key]) < t.maxIdlePerHost {
		t.idle[c.key] = append(t.idle[c.key], c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.nc.Close()
}

// CloseIdleConnections closes the idle connections; those in use close
// when their response ends.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.nc.Close()
		}
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Close closes the idle connections and keeps connections in use from
// going back to the pool.
func (t *h1Transport) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes req on c and reads the response head. On error c is
// closed.
func (c *h1Conn) roundTrip(req *http.Request, pc *pipeline.Context) (*http.Response, error) {
	// Ending the request's context ends a blocked write or read.
	stop := context.AfterFunc(req.Context(), func() { c.nc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.nc.Close()
		return nil, err
	}
	if err := writeRequest(c.bw, req); err != nil {
		if c.reused && !isBodyError(err) {
			err = &staleConnError{err}
		}
		return fail(err)
	}
	if d := c.t.respHeaderTimeout; d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	}
	c.lr.n = c.t.maxHeaderBytes
	var trace *httptrace.ClientTrace
	if pc == nil {
		trace = httptrace.ContextClientTrace(req.Context())
	}
	var resp *http.Response
	for interim := 0; ; interim++ {
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if c.reused && interim == 0 && c.br.Buffered() == 0 && c.lr.n == c.t.maxHeaderBytes {
				err = &staleConnError{err} // nothing of a response arrived
			}
			return fail(err)
		}
		code := resp.StatusCode
		if code < 100 || code > 199 {
			break
		}
		if code == http.StatusSwitchingProtocols || interim == 8 {
			return fail(fmt.Errorf("proxy: unexpected %d response", code))
		}
		if pc != nil {
			forwardInterim(pc, code, resp.Header)
		} else if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	c.lr.n = -1
	if c.t.respHeaderTimeout > 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		c.release(stop, keep)
		return resp, nil
	}
	resp.Body = &h1Body{c: c, rc: resp.Body, stop: stop, keep: keep}
	return resp, nil
}

// release ends the use of c for one exchange: back to the pool when the
// exchange ended cleanly and the connection may be kept, else closed.
func (c *h1Conn) release(stop func() bool, keep bool) {
	if !stop() {
		keep = false // the context ended: the deadline was cut
	}
	if keep {
		c.t.put(c)
		return
	}
	c.nc.Close()
}

// h1Body is a response body on an h1Conn: reading it to its end releases
// the connection; closing it earlier closes the connection, since the rest
// of the body would have to be read first. Close may be called while a
// Read is blocked: closing the connection ends that Read.
type h1Body struct {
	c    *h1Conn
	rc   io.ReadCloser
	stop func() bool
	keep bool
	done atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err != nil && b.done.CompareAndSwap(false, true) {
		b.c.release(b.stop, b.keep && err == io.EOF)
	}
	return n, err
}

var errBodyClosed = errors.New("proxy: read on closed response body")

func (b *h1Body) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.c.release(b.stop, false)
	}
	return nil
}

// bodyWriteError marks a failure to read the request body, the client's
// side, rather than a failure to write to the server.
type bodyWriteError struct{ err error }

func (e *bodyWriteError) Error() string { return e.err.Error() }
func (e *bodyWriteError) Unwrap() error { return e.err }

func isBodyError(err error) bool {
	var be *bodyWriteError
	return errors.As(err, &be)
}

// writeRequest writes req's head and its body of known length. Header
// values that net/http would have to clean (a CR or LF in them) make it
// leave the whole request to net/http's own writer.
func writeRequest(w *bufio.Writer, req *http.Request) error {
	if !cleanHeader(req.Header) || strings.ContainsAny(req.Host, "\r\n ") {
		return fallbackWrite(w, req)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vv := range req.Header {
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		w.WriteString("User-Agent: Go-http-client/1.1\r\n")
	}
	if req.Close {
		w.WriteString("Connection: close\r\n")
	}
	hasBody := req.Body != nil && req.Body != http.NoBody && req.ContentLength > 0
	switch {
	case hasBody:
		var buf [20]byte
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(buf[:0], req.ContentLength, 10))
		w.WriteString("\r\n")
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
	if hasBody {
		body := &recordingReader{r: io.LimitReader(req.Body, req.ContentLength)}
		n, err := w.ReadFrom(body)
		if err == nil && body.err == nil && n == req.ContentLength {
			// Read on to the body's end, as net/http does: a longer
			// body is an error, and a reader may act on its EOF.
			var extra int64
			extra, body.err = io.Copy(io.Discard, req.Body)
			n += extra
		}
		req.Body.Close()
		if body.err != nil {
			return &bodyWriteError{body.err}
		}
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return &bodyWriteError{fmt.Errorf("proxy: request body is %d bytes, its Content-Length %d", n, req.ContentLength)}
		}
	} else if req.Body != nil {
		req.Body.Close()
	}
	return w.Flush()
}

// recordingReader keeps the error its reader returned, to tell a failure
// to read the request body from a failure to write it.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// fallbackWrite writes req with net/http, which cleans header values.
func fallbackWrite(w *bufio.Writer, req *http.Request) error {
	if err := req.Write(w); err != nil {
		return err
	}
	return w.Flush()
}

// cleanHeader reports whether every header name and value can be written
// as it is: no CR, LF or NUL in them.
func cleanHeader(h http.Header) bool {
	for k, vv := range h {
		if strings.ContainsAny(k, "\r\n\x00: ") {
			return false
		}
		for _, v := range vv {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c == '\r' || c == '\n' || c == 0 {
					return false
				}
			}
		}
	}
	return true
}
