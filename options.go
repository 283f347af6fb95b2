package sluice

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// Option configures a Gateway.
type Option func(*settings) error

type settings struct {
	logger       *slog.Logger
	clock        pipeline.Clock
	transport    http.RoundTripper
	store        Store
	filterKinds  []pipeline.Kind
	policyKinds  []pipeline.PolicyKind
	objectKinds  []ObjectKind
	adminToken   string
	adminTLS     *tls.Config // WithAdminTLS (admin_security.go)
	adminHosts   []string    // WithAdminHosts
	drainTimeout time.Duration
	noStats      bool           // WithoutStats (observability.go)
	level        *slog.LevelVar // WithLogLevel; set by New
	builtins     bool
	tracer       trace.TracerProvider
	meter        metric.MeterProvider
	listen       func(network, addr string) (net.Listener, error)
	listenPacket func(network, addr string) (net.PacketConn, error)
}

func defaultSettings() settings {
	return settings{
		logger:       slog.New(slog.DiscardHandler),
		clock:        clock.Real(),
		drainTimeout: 30 * time.Second,
		builtins:     true,
	}
}

// WithLogger sets the logger of the gateway and everything it builds.
// Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) error {
		if l == nil {
			return errors.New("nil logger")
		}
		s.logger = l
		return nil
	}
}

// WithClock sets the time source. Default: the system clock.
func WithClock(c pipeline.Clock) Option {
	return func(s *settings) error {
		if c == nil {
			return errors.New("nil clock")
		}
		s.clock = c
		return nil
	}
}

// WithTransport makes every filter that calls upstreams use rt instead of
// building its own transport. Default: nil, each Proxy tunes its own.
func WithTransport(rt http.RoundTripper) Option {
	return func(s *settings) error { s.transport = rt; return nil }
}

// WithStore sets where object specs are kept, e.g. a raft store from
// package cluster. Default: a new MemoryStore, closed at Shutdown. A store
// passed in is not closed by the gateway.
func WithStore(st Store) Option {
	return func(s *settings) error {
		if st == nil {
			return errors.New("nil store")
		}
		s.store = st
		return nil
	}
}

// WithFilterKinds registers filter kinds besides the built-in ones. A kind
// whose name is already registered is an error.
func WithFilterKinds(kinds ...pipeline.Kind) Option {
	return func(s *settings) error { s.filterKinds = append(s.filterKinds, kinds...); return nil }
}

// WithPolicyKinds registers resilience policy kinds besides the built-in
// CircuitBreaker and Retry. A duplicate name is an error.
func WithPolicyKinds(kinds ...pipeline.PolicyKind) Option {
	return func(s *settings) error { s.policyKinds = append(s.policyKinds, kinds...); return nil }
}

// WithObjectKinds registers object kinds (controllers, gates) besides the
// built-in HTTPServer and Pipeline. A duplicate name is an error.
func WithObjectKinds(kinds ...ObjectKind) Option {
	return func(s *settings) error { s.objectKinds = append(s.objectKinds, kinds...); return nil }
}

// WithoutBuiltinFilters leaves the built-in filter kinds out of the
// registry, for programs that want only their own.
func WithoutBuiltinFilters() Option {
	return func(s *settings) error { s.builtins = false; return nil }
}

// WithAdminToken requires "Authorization: Bearer <token>" on every admin API
// request. Without a token the admin API answers only loopback clients.
func WithAdminToken(token string) Option {
	return func(s *settings) error { s.adminToken = token; return nil }
}

// WithDrainTimeout bounds how long a replaced or deleted object may take to
// finish its requests before it is closed anyway. Default: 30 s.
func WithDrainTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return errors.New("drain timeout must be positive")
		}
		s.drainTimeout = d
		return nil
	}
}

// WithTracerProvider traces requests with tp: a span per request in each
// pipeline and a child span per filter step. Default: none, at no cost.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *settings) error { s.tracer = tp; return nil }
}

// WithMeterProvider records metrics with mp: each pipeline's requests,
// server errors and durations. Default: none.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(s *settings) error { s.meter = mp; return nil }
}

// WithListenFuncs makes the gateway's HTTPServers create their listening
// sockets with listen (TCP) and listenPacket (UDP, for HTTP/3) instead of
// net.Listen and net.ListenPacket. A program that upgrades itself without
// dropping a connection passes the functions of its socket-passing
// library here, e.g. github.com/cloudflare/tableflip's Fds.Listen and
// Fds.ListenPacket, so that the new process takes over the old one's
// sockets. Either may be nil for the default.
func WithListenFuncs(listen func(network, addr string) (net.Listener, error), listenPacket func(network, addr string) (net.PacketConn, error)) Option {
	return func(s *settings) error {
		s.listen, s.listenPacket = listen, listenPacket
		return nil
	}
}

// WithAdminTLS makes ListenAdmin serve the admin API over TLS with cfg,
// which must hold a certificate (Certificates or GetCertificate). With
// cfg.ClientAuth set to tls.RequireAndVerifyClientCert (and cfg.ClientCAs)
// it is mutual TLS: a verified client certificate then authenticates a
// request as a bearer token does, and ListenAdmin accepts a non-loopback
// address without a token. Default: cleartext.
func WithAdminTLS(cfg *tls.Config) Option {
	return func(s *settings) error {
		if cfg == nil || (len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil) {
			return errors.New("admin TLS: the configuration needs a certificate")
		}
		s.adminTLS = cfg.Clone()
		return nil
	}
}

// WithAdminHosts adds names (or IP addresses) that requests to the admin
// API may carry in their Host header, besides the loopback ones
// (localhost, *.localhost, 127.0.0.0/8, ::1), which are always allowed.
// Any other Host is refused with 403, so that a web page whose name an
// attacker rebinds to a loopback address cannot drive the API (DNS
// rebinding). A port in the Host is ignored. Default: loopback names only.
func WithAdminHosts(hosts ...string) Option {
	return func(s *settings) error {
		for _, h := range hosts {
			if h == "" || strings.ContainsAny(h, "/ ") {
				return fmt.Errorf("admin host %q: not a host name or IP address", h)
			}
			s.adminHosts = append(s.adminHosts, h)
		}
		return nil
	}
}
