package gate

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// accessLog writes one line per sampled request. It exists only when the
// access log is enabled.
type accessLog struct {
	logger   *slog.Logger
	sampling float64
	n        atomic.Uint64
}

// sample reports whether to log the next request: of every n requests,
// n×sampling are, spread evenly by a counter.
func (a *accessLog) sample() bool {
	switch {
	case a.sampling >= 1:
		return true
	case a.sampling <= 0:
		return false
	}
	n := a.n.Add(1)
	return uint64(float64(n)*a.sampling) != uint64(float64(n-1)*a.sampling)
}

func (a *accessLog) log(r *http.Request, w *loggingWriter, body *countingBody, rt *route, ri *pipeline.RequestInfo, took time.Duration) {
	status := w.status
	if status == 0 {
		status = http.StatusOK // the handler wrote nothing
	}
	var reqBytes int64
	if body != nil {
		reqBytes = body.n.Load()
	}
	var name, backend string
	if rt != nil {
		name, backend = rt.name, rt.backend
	}
	a.logger.LogAttrs(r.Context(), slog.LevelInfo, "access",
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto),
		slog.Int("status", status),
		slog.Int64("requestBytes", reqBytes),
		slog.Int64("responseBytes", w.bytes),
		slog.Duration("duration", took),
		slog.String("clientIP", ri.ClientIP.String()),
		slog.String("route", name),
		slog.String("backend", backend),
		slog.String("requestID", ri.RequestID),
	)
}

// loggingWriter records the status and the size of a response. Flush and
// Hijack pass through, and Unwrap lets http.ResponseController reach the
// connection's other controls.
type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *loggingWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the connection's sendfile path.
func (w *loggingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

func (w *loggingWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *loggingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the request body bytes the handler read; a transport
// may still read it after the handler returned, hence the atomic.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

var (
	_ http.Flusher  = (*loggingWriter)(nil)
	_ http.Hijacker = (*loggingWriter)(nil)
	_ io.ReaderFrom = (*loggingWriter)(nil)
)
