package gate

import (
	"context"
	"net"
	"net/http"
	"time"
)

// Closing keep-alive connections before a drain.
//
// http.Server.Shutdown closes idle keep-alive connections at once; a client
// that picked one of them to send its next request at that moment sees the
// connection close under it (EOF), and nothing tells it whether the request
// was served. CloseKeepAlives avoids that race: from then on every
// HTTP/1.x response carries Connection: close, so each connection ends
// after its next exchange, the way the client expects; it waits until no
// HTTP/1.x connection is left or ctx ends. A hot upgrade or a stop calls it
// before Shutdown, with a short grace.

// trackConn is the listener's http.Server ConnState hook: it keeps the
// guard informed and counts the open connections.
func (l *listener) trackConn(c net.Conn, state http.ConnState) {
	guardConnState(c, state)
	switch state {
	case http.StateNew:
		l.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		l.conns.Add(-1)
	}
}

// CloseKeepAlives makes the server answer every HTTP/1.x request with
// Connection: close from now on, and waits until its listener has no open
// connection left, or ctx ends. It does nothing to a listener that a newer
// generation took over.
func (s *Server) CloseKeepAlives(ctx context.Context) {
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	if l == nil || l.owner.Load() != s {
		return
	}
	l.closing.Store(true)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for l.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// closingWriter adds Connection: close to an HTTP/1.x response when its
// header is written, after the pipeline set its own header fields.
type closingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *closingWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 && code != http.StatusSwitchingProtocols {
		w.wrote = true
		w.Header().Set("Connection", "close")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closingWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *closingWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer (Hijack,
// deadlines).
func (w *closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
