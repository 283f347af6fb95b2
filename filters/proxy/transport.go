package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// Transport tuning that the spec does not expose.
const (
	dialKeepAlive         = 30 * time.Second
	idleConnTimeout       = 90 * time.Second
	tlsHandshakeTimeout   = 10 * time.Second
	expectContinueTimeout = 1 * time.Second
)

// transportSettings are what a Proxy's own transport is built from. Two
// generations with equal settings can share one transport. The pools' time
// limits are not among them: they are contexts on Env.Clock, set per
// request. The TLS material is compared by tlsKey, a digest of the
// settings and of the bytes of every certificate, key and CA as loaded, so
// a reload after a file changed builds a new transport.
type transportSettings struct {
	maxIdleConns          int
	maxIdleConnsPerHost   int
	connectTimeout        time.Duration
	responseHeaderTimeout time.Duration
	h2c                   bool   // some pool has protocol h2c
	tlsKey                string // "" without tls or mtls
}

// settingsOf returns the transport settings of s, reading the TLS files it
// names, and the TLS client configuration (nil without tls or mtls).
// Errors name the field.
func settingsOf(s *Spec) (transportSettings, *tls.Config, error) {
	ts := transportSettings{
		maxIdleConns:          s.MaxIdleConns,
		maxIdleConnsPerHost:   s.MaxIdleConnsPerHost,
		connectTimeout:        s.ConnectTimeout,
		responseHeaderTimeout: s.ResponseHeaderTimeout,
	}
	if ts.maxIdleConns == 0 {
		ts.maxIdleConns = DefaultMaxIdleConns
	}
	if ts.maxIdleConnsPerHost == 0 {
		ts.maxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if ts.connectTimeout == 0 {
		ts.connectTimeout = DefaultConnectTimeout
	}
	for _, fp := range s.pools() {
		if fp.spec.Protocol == ProtocolH2C {
			ts.h2c = true
		}
	}
	if s.MirrorPool != nil && s.MirrorPool.Protocol == ProtocolH2C {
		ts.h2c = true
	}
	cfg, key, err := tlsConfigOf(s)
	if err != nil {
		return ts, nil, err
	}
	ts.tlsKey = key
	return ts, cfg, nil
}

// tlsMaterial collects the TLS inputs of a spec, with a digest of them.
type tlsMaterial struct {
	cas      [][]byte // PEM
	caFields []string // the field of each of cas
	cert     []byte   // PEM client certificate; nil: none
	key      []byte   // PEM client key
	certFld  string
	digest   []byte
}

func (m *tlsMaterial) add(parts ...[]byte) {
	for _, p := range parts {
		m.digest = strconv.AppendInt(m.digest, int64(len(p)), 10)
		m.digest = append(m.digest, ':')
		m.digest = append(m.digest, p...)
	}
}

// tlsConfigOf builds the TLS client configuration of s from tls and mtls:
// nil when neither is set. key digests everything the configuration was
// built from.
func tlsConfigOf(s *Spec) (cfg *tls.Config, key string, err error) {
	if s.TLS == nil && s.MTLS == nil {
		return nil, "", nil
	}
	var m tlsMaterial
	if mt := s.MTLS; mt != nil {
		if mt.RootCertBase64 != "" {
			b, err := decodeBase64("mtls.rootCertBase64", mt.RootCertBase64)
			if err != nil {
				return nil, "", err
			}
			m.cas, m.caFields = append(m.cas, b), append(m.caFields, "mtls.rootCertBase64")
		}
		if mt.CertBase64 != "" {
			if m.cert, err = decodeBase64("mtls.certBase64", mt.CertBase64); err != nil {
				return nil, "", err
			}
			if m.key, err = decodeBase64("mtls.keyBase64", mt.KeyBase64); err != nil {
				return nil, "", err
			}
			m.certFld = "mtls.certBase64"
		}
	}
	cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	if t := s.TLS; t != nil {
		for i, f := range t.CAFiles {
			b, err := readFile("tls.caFiles["+strconv.Itoa(i)+"]", f)
			if err != nil {
				return nil, "", err
			}
			m.cas, m.caFields = append(m.cas, b), append(m.caFields, "tls.caFiles["+strconv.Itoa(i)+"]")
		}
		if t.CABase64 != "" {
			b, err := decodeBase64("tls.caBase64", t.CABase64)
			if err != nil {
				return nil, "", err
			}
			m.cas, m.caFields = append(m.cas, b), append(m.caFields, "tls.caBase64")
		}
		if t.CertFile != "" {
			if m.cert, err = readFile("tls.certFile", t.CertFile); err != nil {
				return nil, "", err
			}
			if m.key, err = readFile("tls.keyFile", t.KeyFile); err != nil {
				return nil, "", err
			}
			m.certFld = "tls.certFile"
		}
		cfg.ServerName = t.ServerName
		cfg.InsecureSkipVerify = t.InsecureSkipVerify
		if t.MinVersion != "" {
			cfg.MinVersion = tlsVersions[t.MinVersion]
		}
	}
	if len(m.cas) > 0 {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		for i, pem := range m.cas {
			if !roots.AppendCertsFromPEM(pem) {
				return nil, "", pipeline.FieldErr(m.caFields[i], fmt.Errorf("%w: no PEM certificate found", ErrBadTLS))
			}
		}
		cfg.RootCAs = roots
	}
	if m.cert != nil {
		c, err := tls.X509KeyPair(m.cert, m.key)
		if err != nil {
			return nil, "", pipeline.FieldErr(m.certFld, fmt.Errorf("%w: %v", ErrBadTLS, err))
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	// HTTP/2 by ALPN, falling back to HTTP/1.1; the transport's Protocols
	// say the same, this keeps it true should the config be used alone.
	cfg.NextProtos = []string{"h2", "http/1.1"}

	for _, ca := range m.cas {
		m.add(ca)
	}
	m.add(m.cert, m.key, []byte(cfg.ServerName), []byte(strconv.FormatBool(cfg.InsecureSkipVerify)), []byte(strconv.Itoa(int(cfg.MinVersion))))
	sum := sha256.Sum256(m.digest)
	return cfg, hex.EncodeToString(sum[:]), nil
}

func decodeBase64(field, s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, pipeline.FieldErr(field, fmt.Errorf("%w: not base64: %v", ErrBadTLS, err))
	}
	return b, nil
}

func readFile(field, name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, pipeline.FieldErr(field, fmt.Errorf("%w: %v", ErrBadTLS, err))
	}
	return b, nil
}

// transport is the round tripper of one or more generations of a Proxy.
// When the Proxy built it (own is set), the last Proxy to release it closes
// its idle connections; a transport handed in by the Env is never closed.
type transport struct {
	rt       http.RoundTripper
	own      *http.Transport // nil for the Env's transport
	fast     *h1Transport    // cleartext HTTP/1.1, falling back to own; nil for the Env's transport
	h2c      *http.Transport // prior-knowledge HTTP/2 for pools with protocol h2c; nil: none
	h1       *http.Transport // HTTP/1.1 only, for Upgrades; nil for the Env's transport
	settings transportSettings
	refs     atomic.Int64
}

func newTransport(rt http.RoundTripper, ts transportSettings, cfg *tls.Config) *transport {
	t := &transport{rt: rt, settings: ts}
	if rt == nil {
		t.own = newHTTPTransport(ts, cfg, false)
		t.fast = newH1Transport(ts, t.own)
		t.rt = t.fast
		t.h1 = newHTTP1Transport(ts, cfg)
		if ts.h2c {
			t.h2c = newHTTPTransport(ts, cfg, true)
		}
	}
	t.refs.Store(1)
	return t
}

// roundTripper returns the round tripper of a pool: the h2c one for a pool
// with protocol h2c when t has it.
func (t *transport) roundTripper(h2c bool) http.RoundTripper {
	if h2c && t.h2c != nil {
		return t.h2c
	}
	return t.rt
}

// upgradeRoundTripper returns the round tripper of a request that asks to
// switch protocols, whatever its pool's protocol: an Upgrade exists only
// in HTTP/1.1. The Env's transport is used as is (net/http sends a
// WebSocket Upgrade over HTTP/1.1 by itself).
func (t *transport) upgradeRoundTripper() http.RoundTripper {
	if t.h1 != nil {
		return t.h1
	}
	return t.rt
}

// newHTTP1Transport is newHTTPTransport speaking HTTP/1.1 only, also to
// https servers that offer HTTP/2.
func newHTTP1Transport(ts transportSettings, cfg *tls.Config) *http.Transport {
	t := newHTTPTransport(ts, cfg, false)
	var protos http.Protocols
	protos.SetHTTP1(true)
	t.Protocols = &protos
	t.ForceAttemptHTTP2 = false
	return t
}

// newHTTPTransport returns a transport tuned for a gateway: large idle pools,
// HTTP/2 when a TLS server offers it by ALPN (or, with h2c, HTTP/2 with
// prior knowledge to cleartext servers and over TLS), a bounded connect
// time, and no transparent decompression (the client's Accept-Encoding is
// passed on as is). cfg, when not nil, is the TLS client configuration. It
// does not use the HTTP_PROXY environment variables.
func newHTTPTransport(ts transportSettings, cfg *tls.Config, h2c bool) *http.Transport {
	d := &net.Dialer{Timeout: ts.connectTimeout, KeepAlive: dialKeepAlive}
	var protos http.Protocols
	if h2c {
		protos.SetUnencryptedHTTP2(true)
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
	}
	if cfg != nil {
		cfg = cfg.Clone()
	}
	return &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       cfg,
		MaxIdleConns:          ts.maxIdleConns,
		MaxIdleConnsPerHost:   ts.maxIdleConnsPerHost,
		IdleConnTimeout:       idleConnTimeout,
		TLSHandshakeTimeout:   tlsHandshakeTimeout,
		ResponseHeaderTimeout: ts.responseHeaderTimeout,
		ExpectContinueTimeout: expectContinueTimeout,
		ForceAttemptHTTP2:     true,
		Protocols:             &protos,
		DisableCompression:    true,
	}
}

// shareable reports whether a Proxy using t may take prev over instead:
// both were built by their Proxies, with the same settings.
func (t *transport) shareable(prev *transport) bool {
	return t != prev && t.own != nil && prev.own != nil && t.settings == prev.settings
}

// acquire adds a user of t; it fails when t has been released by all its
// users already.
func (t *transport) acquire() bool {
	for {
		n := t.refs.Load()
		if n <= 0 {
			return false
		}
		if t.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a user of t; the last one closes the idle connections of
// an own transport.
func (t *transport) release() {
	if t.refs.Add(-1) == 0 && t.own != nil {
		t.fast.Close()
		t.own.CloseIdleConnections()
		if t.h1 != nil {
			t.h1.CloseIdleConnections()
		}
		if t.h2c != nil {
			t.h2c.CloseIdleConnections()
		}
	}
}

// tlsLogInterval is how often a server's certificate verification failure
// is logged at Warn; the failures in between are logged at Debug.
const tlsLogInterval = time.Minute

// logVerifyError logs err, a failure to verify s's certificate: at Warn at
// most once per tlsLogInterval per server (on the pool's clock), else at
// Debug. It reports whether err was such a failure.
func (p *Pool) logVerifyError(log *slog.Logger, s *Server, err error) bool {
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) {
		return false
	}
	now := p.now().UnixNano()
	next := s.stats.tlsLogNext.Load()
	if now >= next && s.stats.tlsLogNext.CompareAndSwap(next, now+int64(tlsLogInterval)) {
		log.Warn("backend certificate not verified; answering 502 (logged once a minute per server)", "server", s.url, "error", ve.Err)
	} else {
		log.Debug("backend certificate not verified", "server", s.url, "error", ve.Err)
	}
	return true
}
