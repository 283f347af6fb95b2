// Package responseadaptor is the ResponseAdaptor filter: it rewrites the
// response that earlier filters (a Proxy, a Mock) produced — its header
// fields and its body — before it goes back to the client.
//
// # Model
//
// The filter works on the current namespace's response. It never changes
// that response in place: it copies it (the header map too), replaces the
// body if the spec has one, applies the header operations (delete, set,
// add, in that order), and sets the copy with Context.SetResponse. A
// response that someone else still holds (a cache, an OnFinish hook) is
// left as it was.
//
// A new body is fixed text: the response gets its length in ContentLength
// and in the Content-Length header, loses Transfer-Encoding, trailers and
// Content-Encoding (the new body is not encoded; the header operations run
// afterwards and can set one), and the old body is closed.
//
// When there is no response yet, the filter does nothing unless the spec
// has a body; then it creates a 200 response with that body and applies
// the header operations to it.
//
// The spec is Easegress v2's ResponseAdaptor without its template and
// compression features. The filter keeps no per-request state; Handle is
// safe for concurrent use. It declares no results: it always continues.
package responseadaptor

import (
	"bytes"
	"io"
	"net/http"
	"strconv"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/internal/yamlx"
	"github.com/sluicegw/sluice/pipeline"
)

// Kind is the ResponseAdaptor filter kind.
var Kind = pipeline.Define[Spec]("ResponseAdaptor", nil, build).
	WithDescription("rewrites the header fields and body of the response")

// build is Kind's build function.
func build(_ pipeline.Env, s *Spec) (pipeline.Filter, error) {
	a, err := New(s)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Spec is the ResponseAdaptor filter's configuration. Every field is
// optional; the zero Spec leaves the response as it is.
//
//	kind: ResponseAdaptor
//	name: adaptor
//	header:
//	  del: [Server, X-Powered-By]
//	  set: { Cache-Control: no-store }
//	  add: { Vary: Accept-Encoding }
//	body: '{"status": "ok"}'
type Spec struct {
	// Header deletes, sets and adds response header fields, in that
	// order, after the body is replaced.
	Header HeaderSpec `yaml:"header,omitempty"`
	// Body replaces the response body. Empty keeps the body (as in
	// Easegress, a body cannot be replaced by nothing).
	Body string `yaml:"body,omitempty"`
}

// HeaderSpec deletes, sets and adds header fields: see Spec.Header. It is
// shared with the RequestAdaptor filter.
type HeaderSpec = headerops.Spec

// Validate checks the header operations.
func (s *Spec) Validate() error {
	return yamlx.Prefix(s.Header.Validate(), "header")
}

// Adaptor is a built ResponseAdaptor filter.
type Adaptor struct {
	header HeaderSpec
	body   []byte // nil keeps the body
}

// New builds an Adaptor from s, which it checks with s.Validate. Kind
// builds filters with it after decoding their YAML. The Adaptor keeps s's
// header maps: do not change them afterwards.
func New(s *Spec) (*Adaptor, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	a := &Adaptor{header: s.Header}
	if s.Body != "" {
		a.body = []byte(s.Body)
	}
	return a, nil
}

// Handle replaces the current response with an adapted copy.
func (a *Adaptor) Handle(c *pipeline.Context) pipeline.Result {
	resp := c.Response()
	if resp == nil {
		if a.body != nil {
			resp = pipeline.NewResponse(c.Request(), http.StatusOK, "", a.body)
			a.header.Apply(resp.Header)
			c.SetResponse(resp)
		}
		return pipeline.Continue
	}
	if a.body == nil && a.header.IsZero() {
		return pipeline.Continue
	}
	nr := *resp
	nr.Header = resp.Header.Clone()
	if nr.Header == nil {
		nr.Header = make(http.Header)
	}
	if a.body != nil {
		nr.Body = io.NopCloser(bytes.NewReader(a.body))
		nr.ContentLength = int64(len(a.body))
		nr.TransferEncoding = nil
		nr.Trailer = nil
		nr.Uncompressed = false
		nr.Header.Del("Transfer-Encoding")
		nr.Header.Del("Trailer")
		nr.Header.Del("Content-Encoding")
		nr.Header.Set("Content-Length", strconv.Itoa(len(a.body)))
	}
	a.header.Apply(nr.Header)
	c.SetResponse(&nr) // closes the old body if it was replaced
	return pipeline.Continue
}

var _ pipeline.Filter = (*Adaptor)(nil)
