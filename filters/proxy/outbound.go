package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sluicegw/sluice/internal/httpx"
	"github.com/sluicegw/sluice/pipeline"
)

// extraHeaders is the room outboundHeader keeps for the headers it adds:
// X-Forwarded-For, -Host, -Proto, User-Agent and Te.
const extraHeaders = 5

// outbound builds the request for s from in, following the rules of
// httputil.ReverseProxy's Rewrite hook (see the package comment). in is not
// changed: the result is a shallow copy with its own URL and header. The
// returned bodyReader wraps in's body, or is nil when there is no body.
//
// It costs what http.Request.Clone costs: the copy of the request, the URL,
// and one map and one slice for the header; a body adds its wrapper, and an
// X-Forwarded-For from the client the joined value.
func (s *Server) outbound(ctx context.Context, in *http.Request) (*http.Request, *bodyReader) {
	out := in.WithContext(ctx)
	u := &url.URL{Scheme: s.scheme, Host: s.host, RawQuery: in.URL.RawQuery, ForceQuery: in.URL.ForceQuery}
	u.Path, u.RawPath = s.joinPath(in.URL)
	out.URL = u
	out.RequestURI = ""
	out.Close = false // the client's Connection: close is not the server's
	if s.keepHost {
		out.Host = in.Host
	} else {
		out.Host = "" // the URL's host
	}
	out.Header = outboundHeader(in)
	var body *bodyReader
	if in.Body == nil || in.Body == http.NoBody {
		out.Body = http.NoBody
		out.ContentLength = 0
	} else {
		body = &bodyReader{rc: in.Body}
		out.Body = body
	}
	return out, body
}

// upgrading reports whether in asks to switch protocols (HTTP/1.1,
// Connection: upgrade and an Upgrade header) on a route whose gate allows
// it (pipeline.RequestInfo.UpgradeAllowed). Such a request keeps its
// Connection: Upgrade and Upgrade headers (see keepUpgrade), goes over
// HTTP/1.1, is sent once, and a 101 answer carries the upgraded
// connection as its body.
func upgrading(in *http.Request) bool {
	if in == nil || in.ProtoMajor != 1 || in.ProtoMinor < 1 {
		return false
	}
	if len(in.Header["Upgrade"]) == 0 || !hasToken(in.Header["Connection"], "upgrade") {
		return false
	}
	ri := pipeline.RequestInfoOf(in)
	return ri != nil && ri.UpgradeAllowed
}

// keepUpgrade puts in's offer to switch protocols back on out, whose
// hop-by-hop headers outbound removed: Connection: Upgrade and in's
// Upgrade header, and nothing else hop-by-hop.
func keepUpgrade(out, in *http.Request) {
	out.Header["Connection"] = []string{"Upgrade"}
	out.Header["Upgrade"] = slices.Clone(in.Header["Upgrade"])
}

// joinPath joins the server's path prefix and the request's path with one
// slash between them, keeping the escaped forms when either has one (the
// rules of httputil.ProxyRequest.SetURL).
func (s *Server) joinPath(in *url.URL) (path, rawPath string) {
	if s.path == "" && strings.HasPrefix(in.Path, "/") {
		return in.Path, in.RawPath // the common case: nothing to join
	}
	if s.rawPath == "" && in.RawPath == "" {
		return singleJoiningSlash(s.path, in.Path), ""
	}
	apath, bpath := s.escPath, in.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return s.path + in.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return s.path + "/" + in.Path, apath + "/" + bpath
	}
	return s.path + in.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// outboundHeader copies in's header into one new map and one backing slice,
// removes the hop-by-hop headers, and adds the forwarding headers.
func outboundHeader(in *http.Request) http.Header {
	src := in.Header
	n := 0
	for _, vv := range src {
		n += len(vv)
	}
	vals := make([]string, n, n+extraHeaders)
	h := make(http.Header, len(src)+extraHeaders)
	for k, vv := range src {
		if vv == nil {
			h[k] = nil // a nil value asks not to send the header (see below)
			continue
		}
		m := copy(vals, vv)
		h[k] = vals[:m:m]
		vals = vals[m:]
	}
	teTrailers := hasToken(src["Te"], "trailers")
	httpx.RemoveHopByHop(h)

	// A nil X-Forwarded-For, set by an earlier filter, means "do not send
	// one", as with httputil.ReverseProxy.
	if prior, ok := h["X-Forwarded-For"]; !ok || prior != nil {
		if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
			switch len(prior) {
			case 0:
			case 1:
				ip = prior[0] + ", " + ip
			default:
				ip = strings.Join(prior, ", ") + ", " + ip
			}
			h["X-Forwarded-For"] = slot(&vals, ip)
		}
	}
	if _, ok := h["X-Forwarded-Host"]; !ok && in.Host != "" {
		h["X-Forwarded-Host"] = slot(&vals, in.Host)
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		proto := "http"
		if in.TLS != nil {
			proto = "https"
		}
		h["X-Forwarded-Proto"] = slot(&vals, proto)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = slot(&vals, "") // not Go's default User-Agent
	}
	if teTrailers {
		h["Te"] = slot(&vals, "trailers") // the client accepts trailers; so do we
	}
	return h
}

// slot appends v to the spare room of vals and returns it as a one-element
// slice with no room to grow into the next slot.
func slot(vals *[]string, v string) []string {
	*vals = append(*vals, v)
	s := *vals
	return s[len(s)-1 : len(s) : len(s)]
}

// hasToken reports whether the comma-separated values contain token,
// case-insensitively.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t = textproto.TrimString(t)
			if i := strings.IndexByte(t, ';'); i >= 0 {
				t = textproto.TrimString(t[:i])
			}
			if strings.EqualFold(t, token) {
				return true
			}
		}
	}
	return false
}

// bodyReader wraps the client's request body to tell a failure to read it
// (the client's fault) from a failure to send it (the server's).
type bodyReader struct {
	rc     io.ReadCloser
	closed atomic.Bool
	err    atomic.Pointer[error]
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	// After Close (the transport gave up on the server) reads fail for
	// reasons that are not the client's.
	if err != nil && err != io.EOF && !errors.Is(err, http.ErrBodyReadAfterClose) && !b.closed.Load() {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (b *bodyReader) Close() error {
	b.closed.Store(true)
	return b.rc.Close()
}

// readErr returns the first error reading the client's body, or nil.
func (b *bodyReader) readErr() error {
	if b == nil {
		return nil
	}
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// cancelBody ends the contexts of the exchange that produced a response
// (the attempt's per-try timeout and the request's overall one) when the
// response body is closed. Either cancel may be nil.
type cancelBody struct {
	io.ReadCloser
	cancel    context.CancelFunc
	cancelTry context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	if b.cancelTry != nil {
		b.cancelTry()
	}
	if b.cancel != nil {
		b.cancel()
	}
	return err
}

var (
	_ io.ReadCloser = (*bodyReader)(nil)
	_ io.ReadCloser = (*cancelBody)(nil)
)
