// Package requestadaptor is the RequestAdaptor filter: it rewrites the
// request before later filters (usually a Proxy) see it — method, host,
// path, header fields and body.
//
// # Model
//
// The filter never changes the request it is given. For each request it
// makes a copy (http.Request.Clone, which also copies the header map and
// the URL), applies the spec to the copy in a fixed order — method, host,
// path, header, body — and makes the copy the current request with
// Context.SetRequest. Earlier filters, OnFinish hooks and the access log
// that hold the original keep seeing what the client sent.
//
// The path is rewritten on the decoded URL.Path. The escaped form
// (URL.RawPath, which keeps for example an encoded "%2F") is carried over
// when it still encodes the new path — a prefix added to or trimmed from a
// path keeps the rest of its encoding — and cleared otherwise, so that the
// URL stays self-consistent and the backend sees exactly the rewritten
// path.
//
// The spec is Easegress v2's RequestAdaptor without its template, sign and
// compression features. It is checked when the filter is built. The filter
// keeps no per-request state; Handle is safe for concurrent use. It
// declares no results: it always continues.
package requestadaptor

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// Kind is the RequestAdaptor filter kind.
var Kind = pipeline.Define[Spec]("RequestAdaptor", nil, build).
	WithDescription("rewrites the method, host, path, header fields and body of the request")

// build is Kind's build function.
func build(_ pipeline.Env, s *Spec) (pipeline.Filter, error) {
	a, err := New(s)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Adaptor is a built RequestAdaptor filter.
type Adaptor struct {
	method string
	host   string
	path   PathSpec
	pathRe *regexp.Regexp
	header HeaderSpec
	body   []byte // nil keeps the body
	noop   bool
}

// New builds an Adaptor from s, which it checks as Spec.Validate does.
// Kind builds filters with it after decoding their YAML. The Adaptor keeps
// s's header maps: do not change them afterwards.
func New(s *Spec) (*Adaptor, error) { return compile(s) }

// Handle replaces the current request with an adapted copy.
func (a *Adaptor) Handle(c *pipeline.Context) pipeline.Result {
	r := c.Request()
	if r == nil || a.noop {
		return pipeline.Continue
	}
	nr := r.Clone(r.Context())
	if nr.Header == nil {
		nr.Header = make(http.Header)
	}
	if a.method != "" {
		nr.Method = a.method
	}
	if a.host != "" {
		nr.Host = a.host
	}
	if a.rewritesPath() {
		a.rewritePath(nr.URL)
		if nr.RequestURI != "" {
			nr.RequestURI = nr.URL.RequestURI()
		}
	}
	a.header.Apply(nr.Header)
	if a.body != nil {
		setBody(nr, a.body)
	}
	c.SetRequest(nr)
	return pipeline.Continue
}

func (a *Adaptor) rewritesPath() bool {
	p := &a.path
	return p.Replace != "" || p.AddPrefix != "" || p.TrimPrefix != "" || a.pathRe != nil
}

// rewritePath applies the path rule to u. It keeps the escaped form of the
// part of the path it did not change when it has one (see the package
// comment).
func (a *Adaptor) rewritePath(u *url.URL) {
	p := &a.path
	hadRaw := u.RawPath != ""
	oldEscaped := u.EscapedPath()
	var path, raw string
	switch {
	case p.Replace != "":
		path = p.Replace
	case p.AddPrefix != "":
		prefix := strings.TrimSuffix(p.AddPrefix, "/")
		path = prefix + u.Path
		if hadRaw {
			raw = escapePath(prefix) + oldEscaped
		}
	case p.TrimPrefix != "":
		path = strings.TrimPrefix(u.Path, p.TrimPrefix)
		if hadRaw {
			raw = strings.TrimPrefix(oldEscaped, escapePath(p.TrimPrefix))
		}
	case a.pathRe != nil:
		path = a.pathRe.ReplaceAllString(u.Path, p.RegexpReplace.Replace)
	default:
		return
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if raw != "" && !strings.HasPrefix(raw, "/") {
		raw = "/" + raw
	}
	setPath(u, path, raw)
}

// setPath sets u's path and, if raw is a valid encoding of it that differs
// from the default one, its RawPath; otherwise RawPath is cleared.
func setPath(u *url.URL, path, raw string) {
	u.Path = path
	u.RawPath = ""
	if raw == "" || raw == u.EscapedPath() {
		return
	}
	u.RawPath = raw
	if u.EscapedPath() != raw { // EscapedPath ignores a RawPath that does not encode Path
		u.RawPath = ""
	}
}

func escapePath(p string) string { return (&url.URL{Path: p}).EscapedPath() }

// setBody replaces r's body with a fixed one that can be read again
// (GetBody) for retries and redirects.
func setBody(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Trailer = nil
	r.Header.Del("Transfer-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
}

var _ pipeline.Filter = (*Adaptor)(nil)
