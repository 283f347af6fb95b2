package gate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// Defaults of the listening http.Server, used when the Spec's fields are 0.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 1 << 20
	// DefaultMaxConcurrentStreams bounds the open requests of one HTTP/2
	// or HTTP/3 connection.
	DefaultMaxConcurrentStreams = 250
)

// Options are what a Server gets from the gateway that builds it.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// AccessLogger receives the access log when Spec.AccessLog is enabled;
	// nil means Logger. Give it a JSON handler for JSON lines.
	AccessLogger *slog.Logger
	// Resolve returns the handler for a backend pipeline name. It is called
	// once per route when the server is built; the handler it returns must
	// find the current generation of the pipeline per request (and answer
	// 503 while there is none), so routes survive pipeline updates.
	Resolve func(backend string) http.Handler
	// Listen, when set, creates the TCP listening sockets instead of
	// net.Listen: a hot upgrade hands them over from the parent process
	// this way (see github.com/cloudflare/tableflip's Fds.Listen). It is
	// called with network "tcp" and the spec's address.
	Listen func(network, addr string) (net.Listener, error)
	// ListenPacket, when set, creates the UDP sockets of HTTP/3 instead of
	// net.ListenPacket, like Listen. It is called with network "udp".
	ListenPacket func(network, addr string) (net.PacketConn, error)
	// GetCertificate, when set, is consulted on https servers for a
	// server name that no static certificate covers, before the default
	// certificate, and answers the ACME TLS-ALPN-01 challenge (see
	// ACMETLSProtocol). It is called concurrently, during handshakes.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// HTTPChallenge, when set, is offered every request for a path under
	// ACMEChallengePath on a cleartext server, before the IP filter and
	// routing (an ACME server validates from anywhere). It reports
	// whether it answered; if not, the request is routed as usual.
	HTTPChallenge func(w http.ResponseWriter, r *http.Request) bool
}

// ACMEChallengePath is the path prefix of ACME HTTP-01 challenges (RFC
// 8555 §8.3).
const ACMEChallengePath = "/.well-known/acme-challenge/"

// Server is one generation of an HTTPServer: a compiled router plus, once
// Listen has run, a listener that it may share with the generations before
// and after it.
//
// Lifecycle: New (compile) → Inherit (take over the previous generation's
// listener when the address is the same) → Listen (bind, if not inherited) →
// Serve (start accepting; from now on this generation routes every request)
// → Shutdown or Close (drain and close the listener, unless a newer
// generation took it over). Only ServeHTTP runs concurrently.
type Server struct {
	name    string
	spec    Spec
	router  *router
	logger  *slog.Logger
	stats   *counters
	id      identity
	access  *accessLog  // nil when disabled
	tlsConf *tls.Config // nil unless spec.HTTPS
	ipf     ipFilters
	binds   binders
	obs     *observer // nil: no stats, no explaining (see stats.go)

	mu sync.Mutex
	l  *listener

	// challenge is Options.HTTPChallenge on a cleartext server, else nil.
	challenge func(w http.ResponseWriter, r *http.Request) bool
}

type counters struct {
	requests, notFound, methodNotAllowed, badPath, bodyTooLarge atomic.Uint64
	forbidden                                                   atomic.Uint64
}

// listener is shared by the generations of one server while its address
// stays the same.
type listener struct {
	addr     string
	ln       net.Listener
	settings listenerSettings
	srv      *http.Server
	current  atomic.Pointer[Server]
	owner    atomic.Pointer[Server]
	// tlsConf is the TLS configuration of the newest generation that has
	// one, handed to each new handshake; nil on a cleartext listener.
	tlsConf atomic.Pointer[tls.Config]
	h2c     *h2cUpgrader // nil on a TLS listener
	h3      *quicServer  // nil without http3
	served  atomic.Bool
	stopped atomic.Bool // the listening socket was closed on purpose
	done    chan struct{}
	conns   atomic.Int64 // open connections (see trackConn)
	closing atomic.Bool  // HTTP/1.x responses close their connection (see CloseKeepAlives)
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l.h3 != nil {
		l.h3.advertise(w, r)
	}
	if l.closing.Load() && r.ProtoMajor == 1 {
		w = &closingWriter{ResponseWriter: w}
	}
	if s := l.current.Load(); s != nil {
		s.ServeHTTP(w, r)
		return
	}
	http.Error(w, "service unavailable", http.StatusServiceUnavailable)
}

// New compiles spec into a Server. spec must have been validated.
func New(name string, spec *Spec, opts Options) (*Server, error) {
	if spec == nil {
		return nil, errors.New("nil spec")
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &Server{
		name:   name,
		spec:   *spec,
		router: newRouter(spec, opts.Resolve),
		logger: logger.With("server", name),
		stats:  &counters{},
		id:     newIdentity(spec),
		binds:  binders{listen: opts.Listen, listenPacket: opts.ListenPacket},
	}
	srv.obs = newObserver(spec, srv.logger, &srv.id)
	ipf, err := compileIPFilters(spec)
	if err != nil {
		return nil, err
	}
	srv.ipf = ipf
	if !spec.HTTPS {
		srv.challenge = opts.HTTPChallenge
	}
	if spec.HTTPS {
		c, err := spec.tlsConfigWith(opts.GetCertificate)
		if err != nil {
			return nil, err
		}
		srv.tlsConf = c
	}
	if spec.AccessLog.Enabled {
		al := srv.logger
		if opts.AccessLogger != nil {
			al = opts.AccessLogger.With("server", name)
		}
		srv.access = &accessLog{logger: al, sampling: spec.AccessLog.Sampling}
	}
	return srv, nil
}

// ServeHTTP takes an upgrade to h2c where the route allows it; otherwise it
// works out the client's address and the request ID (see ClientIP and
// RequestID), removes an offer to upgrade to h2c, then routes r to its
// backend pipeline, or answers 400, 404, 405 or 413; and writes the access
// log line. Before the pipeline runs it records in r's
// pipeline.RequestInfo whether the route allows other Upgrades
// (allowUpgrade), and removes the offer to upgrade when it does not.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.router.h2c && wantsH2CUpgrade(r) && s.upgradeH2C(w, r) {
		return
	}
	if s.challenge != nil && strings.HasPrefix(r.URL.Path, ACMEChallengePath) && s.challenge(w, r) {
		return
	}
	s.stats.requests.Add(1)
	if r.Method == "PRI" && r.Proto == "HTTP/2.0" && r.URL.Path == "*" {
		// The HTTP/2 preface on a listener without h2c: net/http hands
		// it over as a request.
		http.Error(w, "HTTP/2 without TLS (h2c) is not enabled", http.StatusHTTPVersionNotSupported)
		return
	}
	peer := pipeline.PeerAddr(r.RemoteAddr)
	trusted := s.id.trusts(peer)
	ri := &pipeline.RequestInfo{ClientIP: peer}
	if trusted {
		ri.ClientIP = s.id.clientIP(r.Header, peer)
	}
	ri.RequestID = s.id.requestID(r.Header, trusted)
	stripH2CUpgrade(r.Header)
	r = pipeline.WithRequestInfo(r, ri)
	conn := w
	if s.obs != nil {
		sw := s.obs.begin(w, r, ri, peer)
		defer s.obs.end(sw, r)
		w = sw
	}
	if s.access == nil || !s.access.sample() {
		s.route(w, conn, r)
		return
	}
	start := time.Now()
	lw := &loggingWriter{ResponseWriter: w}
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body // r is our own copy
	}
	rt := s.route(lw, conn, r)
	s.access.log(r, lw, body, rt, ri, time.Since(start))
}

// upgradeH2C serves r's upgrade to h2c when its route allows it and the
// server has a cleartext listener; the request then comes back as stream 1
// of the HTTP/2 connection. It reports whether it did.
func (s *Server) upgradeH2C(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	if l == nil || l.h2c == nil || !s.spec.KeepAlive {
		return false // an HTTP/2 connection is a persistent one
	}
	cr, ok := cleanPath(r)
	if !ok {
		return false
	}
	path := cr.URL.Path
	if path == "" {
		path = "/"
	}
	q := input(r, stripPort(r.Host), path)
	if rt, _, _ := s.router.lookup(&q, nil); rt == nil || !rt.h2c {
		return false
	}
	return l.h2c.serve(w, r, l.srv, l)
}

// route answers r, writing to w; conn is the server's own writer, which
// http.MaxBytesReader needs to close the connection after a 413. It
// returns the matched route, if any.
func (s *Server) route(w, conn http.ResponseWriter, r *http.Request) *route {
	if s.ipf.any && !s.ipf.allowServer(r) {
		s.stats.forbidden.Add(1)
		http.Error(w, "forbidden", http.StatusForbidden)
		return nil
	}
	r, ok := cleanPath(r)
	if !ok {
		s.stats.badPath.Add(1)
		http.Error(w, "bad request: ambiguous path", http.StatusBadRequest)
		return nil
	}
	path := r.URL.Path
	if path == "" {
		path = "/"
	}
	q := input(r, stripPort(r.Host), path)
	rt, params, status := s.router.lookup(&q, nil)
	s.obs.routed(w, rt, path)
	if rt == nil {
		if status == http.StatusMethodNotAllowed {
			s.stats.methodNotAllowed.Add(1)
			w.Header().Set("Allow", s.router.allowed(&q))
			http.Error(w, "method not allowed", status)
			return nil
		}
		s.stats.notFound.Add(1)
		http.NotFound(w, r)
		return nil
	}
	if s.ipf.any && !s.ipf.allowRule(rt.rule, r) {
		s.stats.forbidden.Add(1)
		http.Error(w, "forbidden", http.StatusForbidden)
		return rt
	}
	if ri := pipeline.RequestInfoOf(r); ri != nil {
		ri.UpgradeAllowed = rt.upgrade
		ri.PathParams = params
	}
	r = rt.rewriteRequest(r, path, params)
	if !rt.upgrade {
		stripUpgrade(r.Header)
	}
	if rt.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > rt.maxBody {
			s.stats.bodyTooLarge.Add(1)
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return rt
		}
		r.Body = http.MaxBytesReader(conn, r.Body, rt.maxBody)
	}
	if rt.handler == nil {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return rt
	}
	rt.handler.ServeHTTP(w, r)
	return rt
}

// stripUpgrade removes a request's offer to switch protocols, on a route
// that does not allow it: the Upgrade header and the upgrade token of
// Connection. The request is then served as a normal one.
func stripUpgrade(h http.Header) {
	if _, ok := h["Upgrade"]; !ok {
		return
	}
	h.Del("Upgrade")
	var conn []string
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if t := strings.TrimSpace(tok); t != "" && !strings.EqualFold(t, "upgrade") {
				conn = append(conn, t)
			}
		}
	}
	if len(conn) == 0 {
		h.Del("Connection")
	} else {
		h["Connection"] = []string{strings.Join(conn, ", ")}
	}
}

// Inherit takes over prev's listener, if prev has one on the same address,
// and its counters. prev keeps serving until this server's Serve runs.
func (s *Server) Inherit(prev *Server) {
	if prev == nil {
		return
	}
	s.stats = prev.stats
	s.obs.inherit(prev.obs)
	prev.mu.Lock()
	l := prev.l
	prev.mu.Unlock()
	if l != nil && l.addr == s.spec.ListenAddress() {
		s.mu.Lock()
		s.l = l
		s.mu.Unlock()
	}
}

// Listen binds the listening socket unless the server inherited one. It
// does not accept connections yet.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l != nil {
		return nil
	}
	addr := s.spec.ListenAddress()
	ls := s.spec.listenerSettings()
	ln, udp, err := s.binds.bindPair(addr, ls.http3)
	if err != nil {
		return fmt.Errorf("server %q: listen: %w", s.name, err)
	}
	if ls.maxConnections > 0 {
		ln = newLimitListener(ln, ls.maxConnections)
	}
	l := &listener{addr: addr, ln: ln, settings: ls, done: make(chan struct{})}
	if ls.https {
		// Each handshake takes the current generation's configuration:
		// certificates and client CAs change without a new listener.
		l.tlsConf.Store(s.tlsConf)
		l.ln = tls.NewListener(ln, &tls.Config{
			MinVersion:         tls.VersionTLS12, // unused: the generation's configuration applies
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return l.tlsConf.Load(), nil },
		})
	} else {
		l.h2c = newH2CUpgrader(ls)
		// net/http allows 4 KiB over MaxHeaderBytes; the guard leaves a
		// longer head to it (431).
		l.ln = guardListener{Listener: l.ln, maxHead: ls.maxHeaderBytes + 8<<10, h2c: ls.h2c}
	}
	if udp != nil {
		l.h3 = newQUICServer(udp, l, ls, s.logger)
	}
	l.srv = &http.Server{
		Handler:           l,
		Protocols:         ls.protocols(),
		HTTP2:             ls.http2Config(),
		ReadHeaderTimeout: ls.readHeaderTimeout,
		ReadTimeout:       ls.readTimeout,
		WriteTimeout:      ls.writeTimeout,
		IdleTimeout:       ls.idleTimeout,
		MaxHeaderBytes:    ls.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		ConnState:         l.trackConn,
	}
	l.owner.Store(s)
	s.l = l
	return nil
}

// Serve makes this generation the one that routes the listener's requests,
// and starts accepting connections if the listener is new.
func (s *Server) Serve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.l
	if l == nil {
		return
	}
	l.srv.SetKeepAlivesEnabled(s.spec.KeepAlive)
	if l.settings.https && s.tlsConf != nil {
		l.tlsConf.Store(s.tlsConf)
	}
	l.current.Store(s)
	l.owner.Store(s)
	if l.served.CompareAndSwap(false, true) {
		go func() {
			defer close(l.done)
			if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !l.stopped.Load() {
				s.logger.Error("serving", "error", err)
			}
		}()
		if l.h3 != nil {
			go l.h3.serve(s.logger, l.stopped.Load)
		}
	}
}

// Addr returns the address the server is bound to, or "" before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.l == nil {
		return ""
	}
	return s.l.ln.Addr().String()
}

// StopAccepting closes the listening socket at once, unless a newer
// generation took it over, so that its address is free again; the
// connections already accepted are drained by Shutdown.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	if l != nil && l.owner.Load() == s {
		l.stopped.Store(true)
		l.ln.Close()
		if l.h3 != nil {
			// QUIC connections share the UDP socket: freeing the port
			// closes them. Their clients retry over TCP.
			l.h3.srv.Close()
			l.h3.conn.Close()
		}
	}
}

// Shutdown stops the listener and waits for active requests to finish, or
// for ctx. It does nothing to a listener that a newer generation took over.
// Afterwards the server holds no listener, so Listen may bind again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	if l == nil || !l.owner.CompareAndSwap(s, nil) {
		return nil
	}
	defer func() {
		s.mu.Lock()
		if s.l == l {
			s.l = nil
		}
		s.mu.Unlock()
	}()
	l.stopped.Store(true)
	if l.h3 != nil {
		defer l.h3.shutdown(ctx, l.served.Load())
	}
	if !l.served.Load() {
		return ignoreClosed(l.ln.Close())
	}
	err := l.srv.Shutdown(ctx)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		l.srv.Close()
	}
	if l.h2c != nil {
		l.h2c.shutdown(ctx)
	}
	<-l.done
	return ignoreClosed(err)
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close is Shutdown with the default drain time of 30 seconds.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Shutdown(ctx)
}

// Status is an HTTPServer's runtime status.
type Status struct {
	Address          string `json:"address,omitempty" yaml:"address,omitempty"`
	Requests         uint64 `json:"requests" yaml:"requests"`
	NotFound         uint64 `json:"notFound" yaml:"notFound"`
	MethodNotAllowed uint64 `json:"methodNotAllowed" yaml:"methodNotAllowed"`
	BadPath          uint64 `json:"badPath" yaml:"badPath"`
	// BodyTooLarge counts the requests answered 413 because their
	// Content-Length exceeded the path's clientMaxBodySize.
	BodyTooLarge uint64 `json:"bodyTooLarge" yaml:"bodyTooLarge"`
	// Forbidden counts the requests answered 403 by the server's or a
	// rule's ipFilter.
	Forbidden uint64 `json:"forbidden,omitempty" yaml:"forbidden,omitempty"`
	// PendingRestart is true when the running listener's listener-level
	// settings (timeouts, maxHeaderBytes, maxConnections, https, h2c)
	// differ from the spec's: they take effect only when the listener is
	// recreated.
	PendingRestart bool `json:"pendingRestart,omitempty" yaml:"pendingRestart,omitempty"`
	// Stats are the server's statistics; absent without EnableStats.
	Stats *ServerStats `json:"stats,omitempty" yaml:"stats,omitempty"`
}

// Status reports the bound address and request counters.
func (s *Server) Status() Status {
	s.mu.Lock()
	l := s.l
	s.mu.Unlock()
	return Status{
		Stats:            s.statsPtr(),
		PendingRestart:   l != nil && l.settings != s.spec.listenerSettings(),
		BodyTooLarge:     s.stats.bodyTooLarge.Load(),
		Forbidden:        s.stats.forbidden.Load(),
		Address:          s.Addr(),
		Requests:         s.stats.requests.Load(),
		NotFound:         s.stats.notFound.Load(),
		MethodNotAllowed: s.stats.methodNotAllowed.Load(),
		BadPath:          s.stats.badPath.Load(),
	}
}

var _ http.Handler = (*Server)(nil)
