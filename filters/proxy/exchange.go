package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluicegw/sluice/internal/httpx"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

// drainLimit is how much of a failed attempt's response body is read
// before it is closed, so that its connection can be reused; a longer body
// costs the connection instead.
const drainLimit = 64 << 10

// Errors an attempt reports to resilience.Retry.Do. Do only passes them
// back; the exchange keeps the outcome itself.
var (
	errShortCircuited  = errors.New("circuit breaker open")
	errNoServer        = errors.New("no server available")
	errFailureCode     = errors.New("failure code")
	errSwitchedUnasked = errors.New("server switched protocols unasked")
)

// exchange is one request's way through a pool: its attempts, and the
// outcome of the last one, which finish turns into the response. A pool
// without a retry policy makes one attempt with the exchange on its stack.
//
// Each attempt asks the breaker (refused: 503, shortCircuited, no call),
// chooses a server, bounds itself with the per-try timeout inside the
// overall one, sends the request with a fresh body, classifies the outcome
// and reports it to the breaker. Before attempt n > 1 the previous
// attempt's response is drained and closed.
type exchange struct {
	p   *Pool
	c   *pipeline.Context
	in  *http.Request
	rt  http.RoundTripper
	log *slog.Logger

	upgrade bool // in asks to switch protocols, and its route allows it (see upgrading)

	ctx    context.Context    // in's context bounded by the pool's timeout
	cancel context.CancelFunc // ends ctx; nil without a timeout

	// The request body, prepared by the first attempt.
	replay   bool          // the request can be sent again: no body, or buf holds it all
	buffered bool          // buf holds the whole body
	buf      []byte        // the buffered body
	rest     io.ReadCloser // a body too large to buffer: what was read, then the rest

	// The outcome of the last attempt.
	res       pipeline.Result
	resp      *http.Response     // the server's response; nil when the pool answers itself
	tryCancel context.CancelFunc // ends resp's attempt context; nil without a per-try timeout
	code      int                // the pool's own answer when resp is nil
	msg       string
}

func (x *exchange) init(p *Pool, c *pipeline.Context, in *http.Request, rt http.RoundTripper, log *slog.Logger) {
	x.p, x.c, x.in, x.rt, x.log = p, c, in, rt, log
	x.ctx = in.Context()
	if p.timeout > 0 {
		x.ctx, x.cancel = resilience.WithTimeout(x.ctx, p.clock, p.timeout)
	}
}

// attempt is attempt n of the exchange, under ctx (the overall deadline's).
// It reports whether the attempt failed in a way worth retrying (a server
// error, a timeout or a failure code, of a request whose body can be sent
// again) and an error for anything but success.
func (x *exchange) attempt(ctx context.Context, n int) (retry bool, err error) {
	p := x.p
	if n > 1 {
		x.discard()
		p.stats.retries.Add(1)
	}
	var permit resilience.Permit // the zero Permit ignores Done and Release
	if p.breaker != nil {
		var ok bool
		if permit, ok = p.breaker.Get().Acquire(); !ok {
			p.stats.shortCircuited.Add(1)
			x.log.Debug("circuit breaker open: request short-circuited", "attempt", n)
			x.answer(ResultShortCircuited, http.StatusServiceUnavailable, "service unavailable: circuit breaker open\n")
			return false, errShortCircuited
		}
	}
	if n == 1 {
		if err := x.prepareBody(); err != nil {
			permit.Release()
			x.clientBodyError(err)
			return false, err
		}
	}
	s := p.lb.Choose(x.in)
	if s == nil {
		permit.Release()
		x.log.Error("no server available")
		x.answer(ResultInternalError, http.StatusServiceUnavailable, "no server available\n")
		return false, errNoServer
	}

	tctx := ctx
	var tcancel context.CancelFunc
	if p.perTry > 0 {
		tctx, tcancel = resilience.WithTimeout(ctx, p.clock, p.perTry)
	}
	tctx, span := p.tracing.start(tctx, p, s, n)
	out, body := s.outbound(tctx, x.in)
	p.tracing.inject(tctx, span, out.Header)
	if x.upgrade {
		keepUpgrade(out, x.in)
	}
	if p.upstreamHost != "" {
		out.Host = p.upstreamHost
	}
	switch {
	case x.buffered:
		body = nil
		setBuffered(out, x.buf)
	case x.rest != nil:
		body = &bodyReader{rc: x.rest}
		out.Body = body
	}
	s.stats.requests.Add(1)
	var start time.Time
	if p.feedback != nil || s.stats.rec != nil || x.c.Explain() != nil {
		start = p.now()
	}
	resp, err := x.roundTrip(out)
	if err != nil {
		failed := x.failed(s, tctx, body, err, n)
		x.observe(s, start, x.code)
		endSpan(span, x.code)
		if failed && p.outlier != nil {
			p.outlier.record(p, s, outcomeConnErr)
		}
		if p.feedback != nil {
			p.feedback.Done(s, p.now().Sub(start), failed)
		}
		if tcancel != nil {
			tcancel()
		}
		if !failed {
			permit.Release() // the client's doing: nothing learnt about the server
			return false, err
		}
		permit.Done(true)
		return x.replay, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if !x.upgrade {
			// A switch the client did not ask for, or may not make.
			resp.Body.Close()
			if tcancel != nil {
				tcancel()
			}
			s.stats.errors.Add(1)
			permit.Done(true)
			endSpan(span, http.StatusBadGateway)
			x.log.Warn("server switched protocols unasked", "server", s.url)
			x.answer(ResultServerError, http.StatusBadGateway, "bad gateway\n")
			return false, errSwitchedUnasked
		}
		up := resp.Header["Upgrade"]
		httpx.RemoveHopByHop(resp.Header)
		resp.Header["Connection"] = []string{"Upgrade"}
		if up != nil {
			resp.Header["Upgrade"] = up
		}
	} else {
		httpx.RemoveHopByHop(resp.Header)
	}
	x.resp, x.tryCancel = resp, tcancel
	x.observe(s, start, resp.StatusCode)
	endSpan(span, resp.StatusCode)
	failed := p.failureCodes.has(resp.StatusCode)
	if p.outlier != nil {
		if resp.StatusCode >= 500 {
			p.outlier.record(p, s, outcome5xx)
		} else {
			p.outlier.record(p, s, outcomeOK)
		}
	}
	if p.feedback != nil {
		p.feedback.Done(s, p.now().Sub(start), failed)
	}
	if failed {
		s.stats.errors.Add(1)
		permit.Done(true)
		x.res = ResultFailureCode
		return x.replay, errFailureCode
	}
	permit.Done(false)
	if p.responder != nil {
		p.responder.respond(x.in, resp, s)
	}
	x.res = pipeline.Continue
	return false, nil
}

// prepareBody looks at the request body before the first attempt: a
// request with none can always be sent again; an idempotent one whose body
// fits in serverMaxBodySize is buffered when the pool has a retry policy;
// any other body streams once. An error is the client's (reading failed).
func (x *exchange) prepareBody() error {
	in, p := x.in, x.p
	if in.Body == nil || in.Body == http.NoBody {
		x.replay = true
		return nil
	}
	if p.retry == nil || p.maxBody < 0 || !idempotent(in.Method) || in.ContentLength > p.maxBody {
		return nil // streamed
	}
	var b bytes.Buffer
	if in.ContentLength > 0 {
		b.Grow(int(in.ContentLength) + 1) // +1: room to see EOF without growing
	}
	n, err := b.ReadFrom(io.LimitReader(in.Body, p.maxBody+1))
	if err != nil {
		return err
	}
	if n > p.maxBody {
		// Too large to replay: send what was read, then the rest, once.
		x.rest = readCloser{io.MultiReader(bytes.NewReader(b.Bytes()), in.Body), in.Body}
		return nil
	}
	x.buf, x.buffered, x.replay = b.Bytes(), true, true
	return nil
}

// setBuffered gives out a fresh reader over the buffered body.
func setBuffered(out *http.Request, buf []byte) {
	out.ContentLength = int64(len(buf))
	if len(buf) == 0 {
		out.Body, out.GetBody = http.NoBody, nil
		return
	}
	out.Body = io.NopCloser(bytes.NewReader(buf))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
}

// failed records the outcome of an attempt that got no response and
// reports whether it counts as the server's failure (a timeout or a server
// error) rather than the client's. Error messages are logged without the
// request's URL, which may carry secrets in its query.
func (x *exchange) failed(s *Server, ctx context.Context, body *bodyReader, err error, n int) bool {
	if rerr := body.readErr(); rerr != nil {
		x.log.Debug("reading the request body failed", "server", s.url, "error", rerr)
		x.clientBodyError(rerr)
		return false
	}
	if x.c.Context().Err() != nil {
		// Nobody will read this; it keeps logs from showing a 200.
		x.log.Debug("client went away", "server", s.url)
		x.answer(ResultClientError, http.StatusBadRequest, "")
		return false
	}
	s.stats.errors.Add(1)
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) || isTimeout(err) {
		x.log.Warn("server timed out", "server", s.url, "attempt", n, "error", err)
		x.answer(ResultTimeout, http.StatusGatewayTimeout, "gateway timeout\n")
		return true
	}
	if !x.p.logVerifyError(x.log, s, err) {
		x.log.Warn("server failed", "server", s.url, "attempt", n, "error", err)
	}
	x.answer(ResultServerError, http.StatusBadGateway, "bad gateway\n")
	return true
}

// clientBodyError answers a failure to read the client's body: 413 when
// it was too large for the server, 400 otherwise.
func (x *exchange) clientBodyError(err error) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		x.answer(ResultClientError, http.StatusRequestEntityTooLarge, "request body too large\n")
		return
	}
	x.answer(ResultClientError, http.StatusBadRequest, "bad request body\n")
}

// answer records an outcome that the pool answers itself.
func (x *exchange) answer(res pipeline.Result, code int, msg string) {
	x.res, x.code, x.msg = res, code, msg
}

// discard drops the previous attempt's response before another attempt:
// it drains up to drainLimit of its body, closes it and ends its context.
func (x *exchange) discard() {
	if x.resp != nil {
		io.CopyN(io.Discard, x.resp.Body, drainLimit)
		x.resp.Body.Close()
		x.resp = nil
	}
	if x.tryCancel != nil {
		x.tryCancel()
		x.tryCancel = nil
	}
}

// finish puts the last attempt's outcome into the context and returns its
// result. A server's response keeps its contexts until its body is closed,
// so the timeouts go on bounding the body as it streams.
func (x *exchange) finish() pipeline.Result {
	if x.resp != nil {
		if _, ok := x.resp.Body.(io.ReadWriteCloser); ok && x.resp.StatusCode == http.StatusSwitchingProtocols {
			// The timeouts bound the handshake, not the upgraded
			// connection: the transport has handed that over, and
			// ending the contexts does not close it.
			x.endContexts()
			x.c.SetResponse(x.resp)
			return x.res
		}
		if x.cancel != nil || x.tryCancel != nil {
			x.resp.Body = &cancelBody{ReadCloser: x.resp.Body, cancel: x.cancel, cancelTry: x.tryCancel}
		}
		x.c.SetResponse(x.resp)
		return x.res
	}
	if x.cancel != nil {
		x.cancel()
	}
	x.c.Respond(x.code, x.msg)
	return x.res
}

// endContexts ends the exchange's contexts.
func (x *exchange) endContexts() {
	if x.tryCancel != nil {
		x.tryCancel()
	}
	if x.cancel != nil {
		x.cancel()
	}
}

// idempotent reports whether a request with method m may be sent twice:
// GET, HEAD, OPTIONS, PUT and DELETE ("" means GET).
func idempotent(m string) bool {
	switch m {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}
