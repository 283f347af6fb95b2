package sluice

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/gate"
	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// KindAutoCertManager is the object kind that obtains and renews TLS
// certificates from an ACME certificate authority (Let's Encrypt, or any
// RFC 8555 server).
//
// The manager is a controller. When it runs it loads its ACME account key,
// the certificates of its domains and the pending challenges from the
// gateway's Store, then for every domain without a certificate, or whose
// certificate is due for renewal, it orders one: it answers an HTTP-01
// challenge on the gateway's cleartext HTTPServers (path
// /.well-known/acme-challenge/, before the IP filter and routing) or a
// TLS-ALPN-01 challenge on its https HTTPServers (ALPN "acme-tls/1"), and
// commits the certificate and its key to the Store. An https HTTPServer
// serves a managed certificate for a server name that none of its static
// certificates covers; with autoCert: true it needs no static certificate.
//
// Certificates, the account key and the challenges live in the Store as
// records of internal kinds (whose names start with "sluice:"), not as
// objects: the admin API does not list them, and the gateway does not
// build them. Every gateway sharing the Store (a cluster) watches them, so
// each member serves the certificates and answers the challenges that any
// member obtained or started. Each member also renews what it finds due;
// the last certificate committed wins. The Store thus holds private keys:
// protect it as such.
//
// A certificate is due at its expiry minus renewBefore, but no earlier than
// a third of its lifetime after this manager got it (so that a CA that
// issues certificates shorter than renewBefore does not cause a renewal
// loop). A failed order is retried after one minute, doubling up to an
// hour. Time comes from the gateway's clock.
const KindAutoCertManager = "AutoCertManager"

// DefaultACMEDirectory is the default directoryURL of an AutoCertManager:
// Let's Encrypt's production directory.
const DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// Internal record kinds of the Store (see KindAutoCertManager).
const (
	internalKindPrefix  = "sluice:"
	recordCertificate   = internalKindPrefix + "Certificate"
	recordACMEAccount   = internalKindPrefix + "ACMEAccount"
	recordACMEChallenge = internalKindPrefix + "ACMEChallenge"
)

// internalRecord reports whether a Store record of kind is kept by the
// gateway's own machinery rather than being an object's spec.
func internalRecord(kind string) bool { return strings.HasPrefix(kind, internalKindPrefix) }

// AutoCertSpec is the spec of an AutoCertManager, in Easegress v2 field
// names:
//
//	kind: AutoCertManager
//	name: autocert
//	email: ops@example.com
//	directoryURL: https://acme-v02.api.letsencrypt.org/directory
//	renewBefore: 720h
//	enableHTTP01: true
//	enableTLSALPN01: true
//	domains:
//	  - name: www.example.com
//	  - name: api.example.com
type AutoCertSpec struct {
	// Email is the contact address of the ACME account. Required.
	Email string `yaml:"email"`
	// DirectoryURL is the ACME directory, an https URL. Default
	// DefaultACMEDirectory.
	DirectoryURL string `yaml:"directoryURL"`
	// DirectoryCA holds PEM certificates of the CAs that the directory's
	// own HTTPS certificate is verified against, instead of the system
	// roots: for a private ACME server. Empty means the system roots.
	DirectoryCA string `yaml:"directoryCA,omitempty"`
	// RenewBefore is how long before expiry a certificate is renewed.
	// Default 720h (30 days).
	RenewBefore time.Duration `yaml:"renewBefore"`
	// EnableHTTP01 allows the HTTP-01 challenge, answered on the
	// gateway's cleartext HTTPServers (the CA connects to port 80 of the
	// domain). Default true.
	EnableHTTP01 bool `yaml:"enableHTTP01"`
	// EnableTLSALPN01 allows the TLS-ALPN-01 challenge, answered on the
	// gateway's https HTTPServers (the CA connects to port 443). Default
	// true.
	EnableTLSALPN01 bool `yaml:"enableTLSALPN01"`
	// EnableDNS01 would allow the DNS-01 challenge; it is not supported,
	// and true is an error. Default false.
	EnableDNS01 bool `yaml:"enableDNS01"`
	// Domains get one certificate each. Wildcard names need DNS-01 and
	// are refused.
	Domains []AutoCertDomain `yaml:"domains"`
}

// AutoCertDomain is one domain of an AutoCertManager.
type AutoCertDomain struct {
	// Name is the DNS name of the certificate.
	Name string `yaml:"name"`
	// DNSProvider configures DNS-01 in Easegress; it is accepted only to
	// report that DNS-01 is not supported.
	DNSProvider map[string]any `yaml:"dnsProvider,omitempty"`
}

// SetDefaults sets DirectoryURL, RenewBefore, EnableHTTP01 and
// EnableTLSALPN01.
func (s *AutoCertSpec) SetDefaults() {
	s.DirectoryURL = DefaultACMEDirectory
	s.RenewBefore = 720 * time.Hour
	s.EnableHTTP01 = true
	s.EnableTLSALPN01 = true
}

// Validate checks the spec; errors name the field.
func (s *AutoCertSpec) Validate() error {
	if _, domain, ok := strings.Cut(s.Email, "@"); !ok || domain == "" || strings.ContainsAny(s.Email, " \t\r\n<>") {
		return pipeline.FieldErr("email", fmt.Errorf("%q is not an email address", s.Email))
	}
	u, err := url.Parse(s.DirectoryURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return pipeline.FieldErr("directoryURL", fmt.Errorf("%q is not an https URL", s.DirectoryURL))
	}
	if _, err := s.directoryRoots(); err != nil {
		return err
	}
	if s.RenewBefore <= 0 {
		return pipeline.FieldErr("renewBefore", errors.New("must be positive"))
	}
	if s.EnableDNS01 {
		return pipeline.FieldErr("enableDNS01", errors.New("the DNS-01 challenge is not supported; use enableHTTP01 or enableTLSALPN01"))
	}
	if !s.EnableHTTP01 && !s.EnableTLSALPN01 {
		return pipeline.FieldErr("enableHTTP01", errors.New("enable at least one of enableHTTP01 and enableTLSALPN01"))
	}
	if len(s.Domains) == 0 {
		return pipeline.FieldErr("domains", errors.New("at least one domain is required"))
	}
	seen := map[string]bool{}
	for i, d := range s.Domains {
		f := "domains[" + strconv.Itoa(i) + "]"
		if d.DNSProvider != nil {
			return pipeline.FieldErr(f+".dnsProvider", errors.New("the DNS-01 challenge is not supported"))
		}
		name := normalizeDomain(d.Name)
		if strings.HasPrefix(name, "*.") {
			return pipeline.FieldErr(f+".name", fmt.Errorf("%q: a wildcard certificate needs the DNS-01 challenge, which is not supported", d.Name))
		}
		if !validDomain(name) {
			return pipeline.FieldErr(f+".name", fmt.Errorf("%q is not a DNS name", d.Name))
		}
		if seen[name] {
			return pipeline.FieldErr(f+".name", fmt.Errorf("%q appears twice", d.Name))
		}
		seen[name] = true
	}
	return nil
}

// directoryRoots returns the pool of DirectoryCA, or nil for the system
// roots.
func (s *AutoCertSpec) directoryRoots() (*x509.CertPool, error) {
	if s.DirectoryCA == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(s.DirectoryCA)) {
		return nil, pipeline.FieldErr("directoryCA", errors.New("no PEM certificate"))
	}
	return pool, nil
}

func normalizeDomain(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

// validDomain reports whether n is a lower-case DNS name of LDH labels
// (not an IP address).
func validDomain(n string) bool {
	if n == "" || len(n) > 253 || net.ParseIP(n) != nil {
		return false
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (g *Gateway) autoCertKind() ObjectKind {
	k := DefineObject(KindAutoCertManager, CategorySystem, func(env Env, spec *AutoCertSpec) (Object, error) {
		return newAutoCertManager(env, g.store, spec)
	})
	return k.WithDescription("obtains and renews TLS certificates from an ACME CA (HTTP-01, TLS-ALPN-01) for the gateway's https servers, kept in the store")
}

// autoCertManager is one generation of an AutoCertManager.
type autoCertManager struct {
	name    string
	spec    *AutoCertSpec
	domains map[string]bool
	store   Store
	clock   pipeline.Clock
	logger  *slog.Logger
	hc      *http.Client
	tr      *http.Transport

	mu         sync.RWMutex
	key        crypto.Signer // the account key; nil until Run loads it
	certs      map[string]*managedCert
	httpTokens map[string]string           // token → key authorization
	alpnCerts  map[string]*tls.Certificate // domain → TLS-ALPN-01 certificate
	states     map[string]*AutoCertDomainStatus
}

// managedCert is a certificate of one domain and when to renew it.
type managedCert struct {
	cert    *tls.Certificate
	renewAt time.Time
}

// AutoCertDomainStatus is the state of one domain of an AutoCertManager.
type AutoCertDomainStatus struct {
	Domain   string    `json:"domain" yaml:"domain"`
	NotAfter time.Time `json:"notAfter,omitzero" yaml:"notAfter,omitempty"`
	RenewAt  time.Time `json:"renewAt,omitzero" yaml:"renewAt,omitempty"`
	Serial   string    `json:"serial,omitempty" yaml:"serial,omitempty"`
	// Obtained counts the certificates this manager ordered for the
	// domain.
	Obtained int `json:"obtained" yaml:"obtained"`
	// Error is the last order's error; empty once an order succeeds.
	Error string `json:"error,omitempty" yaml:"error,omitempty"`
}

// AutoCertStatus is an AutoCertManager's status.
type AutoCertStatus struct {
	Domains []AutoCertDomainStatus `json:"domains" yaml:"domains"`
}

func newAutoCertManager(env Env, store Store, spec *AutoCertSpec) (*autoCertManager, error) {
	roots, err := spec.directoryRoots()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     30 * time.Second,
	}
	m := &autoCertManager{
		name:       env.Name,
		spec:       spec,
		domains:    map[string]bool{},
		store:      store,
		clock:      env.Clock,
		logger:     env.Logger,
		tr:         tr,
		hc:         &http.Client{Transport: tr, Timeout: time.Minute},
		certs:      map[string]*managedCert{},
		httpTokens: map[string]string{},
		alpnCerts:  map[string]*tls.Certificate{},
		states:     map[string]*AutoCertDomainStatus{},
	}
	for _, d := range spec.Domains {
		n := normalizeDomain(d.Name)
		m.domains[n] = true
		m.states[n] = &AutoCertDomainStatus{Domain: n}
	}
	return m, nil
}

// Inherit takes over the previous generation's account key, the
// certificates of the domains it keeps, and the pending challenges, so
// that nothing is unserved until Run has loaded the store.
func (m *autoCertManager) Inherit(prev Object) error {
	p, ok := prev.(*autoCertManager)
	if !ok {
		return nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.key = p.key
	for d, c := range p.certs {
		if m.domains[d] {
			m.certs[d] = c
			st := p.states[d]
			m.states[d] = &AutoCertDomainStatus{Domain: d, NotAfter: st.NotAfter, RenewAt: st.RenewAt, Serial: st.Serial, Obtained: st.Obtained}
		}
	}
	maps.Copy(m.httpTokens, p.httpTokens)
	maps.Copy(m.alpnCerts, p.alpnCerts)
	return nil
}

// Close releases the ACME client's connections.
func (m *autoCertManager) Close() error {
	m.tr.CloseIdleConnections()
	return nil
}

// Status reports each domain's certificate and last error.
func (m *autoCertManager) Status() any {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := AutoCertStatus{Domains: []AutoCertDomainStatus{}}
	for _, d := range slices.Sorted(maps.Keys(m.states)) {
		st.Domains = append(st.Domains, *m.states[d])
	}
	return st
}

// certificate returns the managed certificate (or, for a TLS-ALPN-01
// handshake, the challenge certificate) for hello, or nil.
func (m *autoCertManager) certificate(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := normalizeDomain(hello.ServerName)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == gate.ACMETLSProtocol {
		if !m.spec.EnableTLSALPN01 {
			return nil
		}
		return m.alpnCerts[name]
	}
	if mc := m.certs[name]; mc != nil {
		return mc.cert
	}
	return nil
}

// keyAuthorization returns the answer to the HTTP-01 challenge token.
func (m *autoCertManager) keyAuthorization(token string) (string, bool) {
	if !m.spec.EnableHTTP01 {
		return "", false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ka, ok := m.httpTokens[token]
	return ka, ok
}

// Run loads the store, then obtains and renews certificates until ctx is
// done, following the store for what other members commit.
func (m *autoCertManager) Run(ctx context.Context) error {
	var watch <-chan Event
	backoff := map[string]time.Duration{}
	retryAt := map[string]time.Time{}
	var client *acme.Client
	for {
		if watch == nil {
			rev, err := m.load(ctx)
			if err == nil {
				watch, err = m.store.Watch(ctx, rev)
			}
			if err != nil {
				m.logger.Error("autocert: reading the store", "error", err)
				if !clock.Sleep(m.clock, 10*time.Second, ctx.Done()) {
					return nil
				}
				continue
			}
		}
		if client == nil {
			client = m.client()
		}
		next := m.clock.Now().Add(12 * time.Hour)
		for _, d := range slices.Sorted(maps.Keys(m.domains)) {
			if ctx.Err() != nil {
				return nil
			}
			now := m.clock.Now()
			at := m.renewTime(d)
			if r, ok := retryAt[d]; ok && r.After(at) {
				at = r
			}
			if at.After(now) {
				if at.Before(next) {
					next = at
				}
				continue
			}
			if err := m.obtain(ctx, client, d); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				b := min(max(2*backoff[d], time.Minute), time.Hour)
				backoff[d], retryAt[d] = b, m.clock.Now().Add(b)
				m.setError(d, err)
				m.logger.Error("autocert: obtaining a certificate", "domain", d, "error", err, "retryIn", b)
				if retryAt[d].Before(next) {
					next = retryAt[d]
				}
				continue
			}
			delete(backoff, d)
			delete(retryAt, d)
			if at := m.renewTime(d); at.Before(next) {
				next = at
			}
		}
		t := m.clock.NewTimer(next.Sub(m.clock.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		case ev, ok := <-watch:
			t.Stop()
			if !ok {
				watch = nil // fell behind: load again
				continue
			}
			m.applyEvent(ev)
		}
	}
}

// client returns an ACME client with the account key.
func (m *autoCertManager) client() *acme.Client {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return &acme.Client{Key: m.key, HTTPClient: m.hc, DirectoryURL: m.spec.DirectoryURL, UserAgent: "sluice-autocert"}
}

// renewTime is when d's certificate is due; the zero time when d has none.
func (m *autoCertManager) renewTime(d string) time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if mc := m.certs[d]; mc != nil {
		return mc.renewAt
	}
	return time.Time{}
}

func (m *autoCertManager) setError(d string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.states[d].Error = err.Error()
}

// storedRecord is the body of the internal records.
type storedRecord struct {
	Kind string `yaml:"kind"`
	Name string `yaml:"name"`
	// Certificate and account records.
	Key  string `yaml:"key,omitempty"`
	Cert string `yaml:"cert,omitempty"`
	// Challenge records.
	Type    string `yaml:"type,omitempty"`
	Domain  string `yaml:"domain,omitempty"`
	Token   string `yaml:"token,omitempty"`
	KeyAuth string `yaml:"keyAuth,omitempty"`
}

func (r storedRecord) op() Op {
	b, _ := yaml.Marshal(r)
	return Op{Kind: r.Kind, Name: r.Name, Spec: b}
}

// load reads the account key, the certificates and the challenges from
// the store, creating the account key if there is none, and returns the
// store's revision.
func (m *autoCertManager) load(ctx context.Context) (int64, error) {
	records, rev, err := m.store.List(ctx)
	if err != nil {
		return 0, err
	}
	haveKey := false
	for _, r := range records {
		if r.Kind == recordACMEAccount && r.Name == m.name {
			haveKey = true
		}
		m.applyRecord(r, false)
	}
	if !haveKey {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return 0, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return 0, err
		}
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if rev, err = m.store.Commit(ctx, storedRecord{Kind: recordACMEAccount, Name: m.name, Key: string(pemKey)}.op()); err != nil {
			return 0, err
		}
		m.mu.Lock()
		m.key = key
		m.mu.Unlock()
	}
	return rev, nil
}

func (m *autoCertManager) applyEvent(ev Event) {
	if !internalRecord(ev.Record.Kind) {
		return
	}
	if ev.Delete {
		if ev.Record.Kind == recordACMEChallenge {
			m.mu.Lock()
			delete(m.httpTokens, ev.Record.Name)
			delete(m.alpnCerts, strings.TrimPrefix(ev.Record.Name, "tls-alpn-01."))
			m.mu.Unlock()
		}
		return
	}
	m.applyRecord(ev.Record, true)
}

// applyRecord takes in one stored record of the internal kinds. Records
// that do not parse are logged and ignored.
func (m *autoCertManager) applyRecord(r Record, fromWatch bool) {
	if !internalRecord(r.Kind) {
		return
	}
	var sr storedRecord
	if err := yaml.Unmarshal(r.Spec, &sr); err != nil {
		m.logger.Warn("autocert: a stored record does not parse", "kind", r.Kind, "name", r.Name, "error", err)
		return
	}
	switch r.Kind {
	case recordACMEAccount:
		if r.Name != m.name {
			return
		}
		block, _ := pem.Decode([]byte(sr.Key))
		if block == nil {
			m.logger.Warn("autocert: the stored account key is not PEM")
			return
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		signer, ok := k.(crypto.Signer)
		if err != nil || !ok {
			m.logger.Warn("autocert: the stored account key does not parse", "error", err)
			return
		}
		m.mu.Lock()
		if m.key == nil || !fromWatch {
			m.key = signer
		}
		m.mu.Unlock()
	case recordCertificate:
		if !m.domains[r.Name] {
			return
		}
		c, err := tls.X509KeyPair([]byte(sr.Cert), []byte(sr.Key))
		if err != nil {
			m.logger.Warn("autocert: a stored certificate does not parse", "domain", r.Name, "error", err)
			return
		}
		if c.Leaf.VerifyHostname(r.Name) != nil {
			m.logger.Warn("autocert: a stored certificate is not for its domain", "domain", r.Name)
			return
		}
		m.mu.Lock()
		if cur := m.certs[r.Name]; cur == nil || c.Leaf.NotAfter.After(cur.cert.Leaf.NotAfter) {
			m.setCertLocked(r.Name, &c)
		}
		m.mu.Unlock()
	case recordACMEChallenge:
		m.mu.Lock()
		defer m.mu.Unlock()
		switch sr.Type {
		case "http-01":
			m.httpTokens[sr.Token] = sr.KeyAuth
		case "tls-alpn-01":
			c, err := tls.X509KeyPair([]byte(sr.Cert), []byte(sr.Key))
			if err == nil {
				m.alpnCerts[sr.Domain] = &c
			}
		}
	}
}

// setCertLocked makes c the certificate of d.
func (m *autoCertManager) setCertLocked(d string, c *tls.Certificate) {
	leaf := c.Leaf
	renewAt := leaf.NotAfter.Add(-m.spec.RenewBefore)
	if floor := m.clock.Now().Add(leaf.NotAfter.Sub(leaf.NotBefore) / 3); renewAt.Before(floor) {
		renewAt = floor
	}
	m.certs[d] = &managedCert{cert: c, renewAt: renewAt}
	st := m.states[d]
	st.NotAfter, st.RenewAt, st.Serial = leaf.NotAfter, renewAt, leaf.SerialNumber.Text(16)
}

// obtain orders a certificate for d, answers its challenges, and commits
// the certificate to the store.
func (m *autoCertManager) obtain(ctx context.Context, client *acme.Client, d string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := client.Register(ctx, &acme.Account{Contact: []string{"mailto:" + m.spec.Email}}, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("registering the account: %w", err)
	}
	order, err := client.AuthorizeOrder(ctx, acme.DomainIDs(d))
	if err != nil {
		return fmt.Errorf("ordering: %w", err)
	}
	for _, zurl := range order.AuthzURLs {
		if err := m.authorize(ctx, client, zurl); err != nil {
			return err
		}
	}
	if order, err = client.WaitOrder(ctx, order.URI); err != nil {
		return fmt.Errorf("waiting for the order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: d}, DNSNames: []string{d}}, key)
	if err != nil {
		return err
	}
	chain, _, err := client.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return fmt.Errorf("finalizing the order: %w", err)
	}
	var certPEM []byte
	for _, der := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the issued certificate: %w", err)
	}
	if err := c.Leaf.VerifyHostname(d); err != nil {
		return fmt.Errorf("the issued certificate: %w", err)
	}
	if _, err := m.store.Commit(ctx, storedRecord{Kind: recordCertificate, Name: d, Cert: string(certPEM), Key: string(keyPEM)}.op()); err != nil {
		return fmt.Errorf("storing the certificate: %w", err)
	}
	m.mu.Lock()
	m.setCertLocked(d, &c)
	m.states[d].Obtained++
	m.states[d].Error = ""
	m.mu.Unlock()
	m.logger.Info("autocert: obtained a certificate", "domain", d, "notAfter", c.Leaf.NotAfter)
	return nil
}

// authorize completes one authorization with the first challenge the spec
// enables, in the order the CA offers them.
func (m *autoCertManager) authorize(ctx context.Context, client *acme.Client, zurl string) error {
	z, err := client.GetAuthorization(ctx, zurl)
	if err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	d := normalizeDomain(z.Identifier.Value)
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if (c.Type == "http-01" && m.spec.EnableHTTP01) || (c.Type == "tls-alpn-01" && m.spec.EnableTLSALPN01) {
			chal = c
			break
		}
	}
	if chal == nil {
		return fmt.Errorf("authorization of %q: the CA offers no challenge this manager enables", d)
	}
	rec := storedRecord{Kind: recordACMEChallenge, Type: chal.Type, Domain: d, Token: chal.Token}
	switch chal.Type {
	case "http-01":
		ka, err := client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return err
		}
		rec.Name, rec.KeyAuth = chal.Token, ka
		m.mu.Lock()
		m.httpTokens[chal.Token] = ka
		m.mu.Unlock()
	case "tls-alpn-01":
		c, err := client.TLSALPN01ChallengeCert(chal.Token, d)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			return err
		}
		rec.Name = "tls-alpn-01." + d
		rec.Cert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
		rec.Key = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
		m.mu.Lock()
		m.alpnCerts[d] = &c
		m.mu.Unlock()
	}
	// Other members answer the challenge too once they see the record.
	if _, err := m.store.Commit(ctx, rec.op()); err != nil {
		return fmt.Errorf("storing the challenge: %w", err)
	}
	defer func() {
		m.mu.Lock()
		delete(m.httpTokens, chal.Token)
		if chal.Type == "tls-alpn-01" {
			delete(m.alpnCerts, d)
		}
		m.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := m.store.Commit(cctx, Op{Delete: true, Kind: recordACMEChallenge, Name: rec.Name}); err != nil {
			m.logger.Warn("autocert: removing a challenge from the store", "error", err)
		}
	}()
	if _, err := client.Accept(ctx, chal); err != nil {
		return fmt.Errorf("accepting the %s challenge of %q: %w", chal.Type, d, err)
	}
	if _, err := client.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("authorization of %q (%s): %w", d, chal.Type, err)
	}
	return nil
}

// autoCerts is a gateway's live AutoCertManagers, which its HTTPServers ask
// for certificates and challenge answers.
type autoCerts struct {
	mu       sync.RWMutex
	managers map[string]*autoCertManager
}

// set makes m the live manager called name; nil removes it.
func (a *autoCerts) set(name string, m *autoCertManager) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m == nil {
		delete(a.managers, name)
		return
	}
	if a.managers == nil {
		a.managers = map[string]*autoCertManager{}
	}
	a.managers[name] = m
}

// errNoManagedCert: no AutoCertManager has a certificate for the name.
var errNoManagedCert = errors.New("no managed certificate for this server name")

// getCertificate is gate.Options.GetCertificate.
func (a *autoCerts) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, m := range a.managers {
		if c := m.certificate(hello); c != nil {
			return c, nil
		}
	}
	return nil, errNoManagedCert
}

// httpChallenge is gate.Options.HTTPChallenge: it answers the HTTP-01
// challenges of the managers.
func (a *autoCerts) httpChallenge(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	token := strings.TrimPrefix(r.URL.Path, gate.ACMEChallengePath)
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, m := range a.managers {
		if ka, ok := m.keyAuthorization(token); ok {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", strconv.Itoa(len(ka)))
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				_, _ = w.Write([]byte(ka))
			}
			return true
		}
	}
	return false
}

var (
	_ Controller = (*autoCertManager)(nil)
	_ Inheritor  = (*autoCertManager)(nil)
	_ Statuser   = (*autoCertManager)(nil)
)
