package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/sluicegw/sluice/internal/httpx"
	"github.com/sluicegw/sluice/pipeline"
)

// Pool is a set of servers with the policy that spreads requests over them
// and the rules for one exchange with a server (timeout, failure codes). It
// is built from a PoolSpec and immutable; requests share it concurrently.
type Pool struct {
	servers      []*Server
	lb           LoadBalancer
	timeout      time.Duration
	failureCodes codeSet
}

func newPool(spec *PoolSpec) (*Pool, error) {
	p := &Pool{timeout: spec.Timeout}
	for _, ss := range spec.Servers {
		s, err := newServer(ss)
		if err != nil {
			return nil, err
		}
		p.servers = append(p.servers, s)
	}
	p.lb = newLoadBalancer(spec.LoadBalance.Policy, p.servers)
	for _, code := range spec.FailureCodes {
		p.failureCodes.add(code)
	}
	return p, nil
}

// Servers returns the pool's servers in the order of the spec.
func (p *Pool) Servers() []*Server { return slices.Clone(p.servers) }

// LoadBalancer returns the pool's load balancer.
func (p *Pool) LoadBalancer() LoadBalancer { return p.lb }

// handle sends c's request to a server of p through rt and puts the
// response into c.
func (p *Pool) handle(c *pipeline.Context, rt http.RoundTripper, log *slog.Logger) pipeline.Result {
	in := c.Request()
	if err := checkRequest(in); err != nil {
		log.Error("cannot build the outbound request", "error", err)
		c.Respond(http.StatusInternalServerError, "internal error\n")
		return ResultInternalError
	}
	s := p.lb.Choose(in)
	if s == nil {
		log.Error("no server available")
		c.Respond(http.StatusServiceUnavailable, "no server available\n")
		return ResultInternalError
	}

	ctx := in.Context()
	var cancel context.CancelFunc
	if p.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
	}
	out, body := s.outbound(ctx, in)
	s.stats.requests.Add(1)
	resp, err := rt.RoundTrip(out)
	if err != nil {
		res := p.fail(c, s, ctx, body, err, log)
		if cancel != nil {
			cancel()
		}
		return res
	}
	httpx.RemoveHopByHop(resp.Header)
	if cancel != nil {
		resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	}
	c.SetResponse(resp)
	if p.failureCodes.has(resp.StatusCode) {
		s.stats.errors.Add(1)
		return ResultFailureCode
	}
	return pipeline.Continue
}

// fail sets the response for a failed exchange with s and returns its
// result. Error messages are logged without the request's URL, which may
// carry secrets in its query.
func (p *Pool) fail(c *pipeline.Context, s *Server, ctx context.Context, body *bodyReader, err error, log *slog.Logger) pipeline.Result {
	if rerr := body.readErr(); rerr != nil {
		log.Debug("reading the request body failed", "server", s.url, "error", rerr)
		if _, ok := errors.AsType[*http.MaxBytesError](rerr); ok {
			c.Respond(http.StatusRequestEntityTooLarge, "request body too large\n")
		} else {
			c.Respond(http.StatusBadRequest, "bad request body\n")
		}
		return ResultClientError
	}
	if c.Context().Err() != nil {
		// Nobody will read this; it keeps logs from showing a 200.
		log.Debug("client went away", "server", s.url)
		c.Respond(http.StatusBadRequest, "")
		return ResultClientError
	}
	s.stats.errors.Add(1)
	if ctx.Err() == context.DeadlineExceeded || isTimeout(err) {
		log.Warn("server timed out", "server", s.url, "error", err)
		c.Respond(http.StatusGatewayTimeout, "gateway timeout\n")
		return ResultTimeout
	}
	log.Warn("server failed", "server", s.url, "error", err)
	c.Respond(http.StatusBadGateway, "bad gateway\n")
	return ResultServerError
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// checkRequest reports why in cannot be sent, if it cannot. An earlier
// filter may have left no request or a broken one.
func checkRequest(in *http.Request) error {
	switch {
	case in == nil:
		return errors.New("no request")
	case in.URL == nil:
		return errors.New("the request has no url")
	case !validMethod(in.Method):
		return errors.New("the request method is not a valid token")
	}
	return nil
}

// validMethod reports whether m is an HTTP token ("" means GET).
func validMethod(m string) bool {
	for i := 0; i < len(m); i++ {
		if !isTokenByte(m[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// inherit takes over prev's state: the load balancer's (the round-robin
// turn) and the counters of servers with the same URL.
func (p *Pool) inherit(prev *Pool) {
	if inh, ok := p.lb.(inheritor); ok {
		inh.inherit(prev.lb)
	}
	// Match servers by URL; a URL listed n times matches its n-th listing.
	byURL := map[string][]*serverStats{}
	for _, s := range prev.servers {
		byURL[s.url] = append(byURL[s.url], s.stats)
	}
	for _, s := range p.servers {
		if st := byURL[s.url]; len(st) > 0 {
			s.stats = st[0]
			byURL[s.url] = st[1:]
		}
	}
}

// PoolStatus is one pool's status.
type PoolStatus struct {
	Servers []ServerStatus `json:"servers" yaml:"servers"`
}

func (p *Pool) status() PoolStatus {
	ps := PoolStatus{Servers: make([]ServerStatus, len(p.servers))}
	for i, s := range p.servers {
		ps.Servers[i] = s.status()
	}
	return ps
}

// codeSet is a set of HTTP status codes (0..639) as a bitmap.
type codeSet [10]uint64

func (cs *codeSet) add(code int) {
	if code >= 0 && code < 64*len(cs) {
		cs[code/64] |= 1 << (code % 64)
	}
}

func (cs *codeSet) has(code int) bool {
	return code >= 0 && code < 64*len(cs) && cs[code/64]&(1<<(code%64)) != 0
}
