// Package httpx holds small HTTP helpers shared by the gate, the pipeline
// engine and the proxy: hop-by-hop header handling and pooled copy buffers.
package httpx

import (
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1, plus the
// non-standard ones proxies commonly strip.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// RemoveHopByHop deletes the hop-by-hop headers from h, including those that
// the Connection header names.
func RemoveHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			name = textproto.TrimString(name)
			if name == "" || strings.EqualFold(name, "close") || isHop(name) {
				continue // removed below anyway, without allocating
			}
			h.Del(name)
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

func isHop(name string) bool {
	for _, k := range hopHeaders {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

const bufSize = 32 << 10

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// ReadError wraps an error reading the source of a Copy, to tell it from an
// error writing to the destination (a client gone away).
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "reading: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// Copy copies src to dst with a pooled buffer. When flush is not nil it is
// called after every write, for streamed responses (SSE, chunked progress).
// An error reading src is a *ReadError.
func Copy(dst io.Writer, src io.Reader, flush func()) (int64, error) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	var written int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if werr != nil {
				return written, werr
			}
			if flush != nil {
				flush()
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, &ReadError{Err: rerr}
		}
	}
}
