package pipeline

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
)

// PrimaryNamespace is the namespace of the request the client sent and of
// the response it gets back. Flow steps with another namespace work on a
// request and response of their own (for API aggregation and orchestration).
const PrimaryNamespace = "PRIMARY"

type exchange struct {
	ns   string
	req  *http.Request
	resp *http.Response
}

type keyValue struct {
	key, value any
}

// Context carries one request through a pipeline: the request and response of
// each namespace, values that filters share, the logger, and hooks that run
// when the request is done.
//
// A Context belongs to one request and one goroutine at a time; filters must
// not keep it after Handle returns. The pipeline reuses Contexts from a pool
// once the OnFinish hooks have run.
type Context struct {
	ex       []exchange // ex[0] is the primary namespace
	cur      int
	values   []keyValue
	finish   []func(*Context)
	logger   *slog.Logger
	finished bool
	w        http.ResponseWriter // the client's, while a pipeline serves; nil otherwise
	explain  *Explain            // nil unless the gate explains the request
}

// discardLogger is the logger of a Context outside a pipeline. It is never
// changed.
var discardLogger = slog.New(slog.DiscardHandler)

// NewContext returns a Context for r outside a pipeline's pool: for tests
// and for programs that run a Pipeline with Run.
func NewContext(r *http.Request) *Context {
	c := &Context{}
	c.reset(r, nil)
	return c
}

func (c *Context) reset(r *http.Request, logger *slog.Logger) {
	if cap(c.ex) == 0 {
		c.ex = make([]exchange, 1, 2)
	}
	clear(c.ex[:cap(c.ex)])
	c.ex = c.ex[:1]
	c.ex[0] = exchange{ns: PrimaryNamespace, req: r}
	c.cur = 0
	clear(c.values)
	c.values = c.values[:0]
	clear(c.finish)
	c.finish = c.finish[:0]
	if logger == nil {
		logger = discardLogger
	}
	c.logger = logger
	c.finished = false
	c.w = nil
	c.explain = nil
}

// Request returns the request of the current namespace.
func (c *Context) Request() *http.Request { return c.ex[c.cur].req }

// SetRequest replaces the request of the current namespace.
func (c *Context) SetRequest(r *http.Request) { c.ex[c.cur].req = r }

// Response returns the response of the current namespace; nil until a filter
// sets one.
func (c *Context) Response() *http.Response { return c.ex[c.cur].resp }

// SetResponse replaces the response of the current namespace. The body of
// the response it replaces, if any, is closed.
func (c *Context) SetResponse(resp *http.Response) { c.setResponse(c.cur, resp) }

func (c *Context) setResponse(i int, resp *http.Response) {
	if old := c.ex[i].resp; old != nil && old != resp && old.Body != nil && (resp == nil || !sameBody(old.Body, resp.Body)) {
		old.Body.Close()
	}
	c.ex[i].resp = resp
}

// sameBody reports whether a and b are the same body, without panicking on
// bodies of a type that == cannot compare.
func sameBody(a, b io.ReadCloser) bool {
	if b == nil || reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	// Only pointers are compared: a struct body can hold a func or a map
	// that == would panic on.
	if k := reflect.TypeOf(a).Kind(); k != reflect.Pointer && k != reflect.UnsafePointer {
		return false
	}
	return a == b
}

// Respond sets a complete response with status code and body on the current
// namespace and returns it, so that the caller can add headers.
func (c *Context) Respond(code int, body string) *http.Response {
	resp := NewResponse(c.Request(), code, "text/plain; charset=utf-8", []byte(body))
	c.SetResponse(resp)
	return resp
}

// NewResponse returns a response with a fixed body. contentType may be empty.
func NewResponse(req *http.Request, code int, contentType string, body []byte) *http.Response {
	h := make(http.Header, 2)
	if contentType != "" && len(body) > 0 {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// Namespace returns the name of the current namespace.
func (c *Context) Namespace() string { return c.ex[c.cur].ns }

// Namespaces returns the names of the namespaces used so far, primary first.
func (c *Context) Namespaces() []string {
	out := make([]string, len(c.ex))
	for i, e := range c.ex {
		out[i] = e.ns
	}
	return out
}

// UseNamespace makes ns the current namespace. A namespace used for the first
// time starts with a copy of the primary request without its body.
func (c *Context) UseNamespace(ns string) { c.cur = c.index(ns, true) }

func (c *Context) index(ns string, create bool) int {
	if ns == "" {
		return 0
	}
	for i := range c.ex {
		if c.ex[i].ns == ns {
			return i
		}
	}
	if !create {
		return -1
	}
	var req *http.Request
	if p := c.ex[0].req; p != nil {
		req = p.Clone(p.Context())
		req.Body = http.NoBody
		req.ContentLength = 0
		req.GetBody = nil
	}
	c.ex = append(c.ex, exchange{ns: ns, req: req})
	return len(c.ex) - 1
}

// RequestIn returns the request of namespace ns, or nil if ns is not used.
func (c *Context) RequestIn(ns string) *http.Request {
	if i := c.index(ns, false); i >= 0 {
		return c.ex[i].req
	}
	return nil
}

// ResponseIn returns the response of namespace ns, or nil.
func (c *Context) ResponseIn(ns string) *http.Response {
	if i := c.index(ns, false); i >= 0 {
		return c.ex[i].resp
	}
	return nil
}

// SetRequestIn sets the request of namespace ns, creating the namespace.
func (c *Context) SetRequestIn(ns string, r *http.Request) { c.ex[c.index(ns, true)].req = r }

// SetResponseIn sets the response of namespace ns, creating the namespace.
func (c *Context) SetResponseIn(ns string, resp *http.Response) {
	c.setResponse(c.index(ns, true), resp)
}

// Context returns the primary request's context: it is cancelled when the
// client goes away.
func (c *Context) Context() context.Context {
	if r := c.ex[0].req; r != nil {
		return r.Context()
	}
	return context.Background()
}

// Value returns the value stored under key, or nil.
func (c *Context) Value(key any) any {
	for _, kv := range c.values {
		if kv.key == key {
			return kv.value
		}
	}
	return nil
}

// SetValue stores value under key for later filters of the same request.
// Keys are compared with ==; use an unexported type for keys, as with
// context.Context.
func (c *Context) SetValue(key, value any) {
	for i := range c.values {
		if c.values[i].key == key {
			c.values[i].value = value
			return
		}
	}
	c.values = append(c.values, keyValue{key, value})
}

// WriteInterim sends the client an informational response (1xx other than
// 101, such as 103 Early Hints) with header, ahead of the final response.
// It reports false without writing when there is no client connection to
// write to (a Context from NewContext, or code not in 100..199 or 101).
// A filter calls it only while its Handle runs, from Handle's goroutine or
// from one Handle waits for (an httptrace hook); it must not overlap
// another call.
func (c *Context) WriteInterim(code int, header http.Header) bool {
	if c.w == nil || code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
		return false
	}
	h := c.w.Header()
	for k, vv := range header {
		h[k] = vv
	}
	c.w.WriteHeader(code)
	// net/http keeps the header map for the final response: remove what
	// belonged to the interim one.
	for k := range header {
		delete(h, k)
	}
	return true
}

// Logger returns the pipeline's logger.
func (c *Context) Logger() *slog.Logger { return c.logger }

// OnFinish registers fn to run after the response has been written (or the
// request failed). Hooks run in the order they were added, always, once.
func (c *Context) OnFinish(fn func(*Context)) { c.finish = append(c.finish, fn) }

// Finish runs the OnFinish hooks. The pipeline calls it; programs that use
// NewContext and Run call it themselves. It runs the hooks only once.
func (c *Context) Finish() {
	if c.finished {
		return
	}
	c.finished = true
	for i := 0; i < len(c.finish); i++ {
		func() {
			defer func() {
				if v := recover(); v != nil {
					c.logger.Error("panic in OnFinish hook", "panic", v)
				}
			}()
			c.finish[i](c)
		}()
	}
}
