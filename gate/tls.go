package gate

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// clientAuthTypes maps Spec.ClientAuth to Go's client authentication.
var clientAuthTypes = map[string]tls.ClientAuthType{
	"none":    tls.NoClientCert,
	"request": tls.RequestClientCert,
	"require": tls.RequireAnyClientCert,
	"verify":  tls.RequireAndVerifyClientCert,
}

var tlsVersions = map[string]uint16{
	"":    tls.VersionTLS12,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// validateTLS checks the TLS fields; with https on it loads and parses the
// certificates, keys and CAs, so that a bad one is an error on its field.
func (s *Spec) validateTLS() error {
	if _, ok := clientAuthTypes[s.ClientAuth]; !ok && s.ClientAuth != "" {
		return pipeline.FieldErr("clientAuth", fmt.Errorf("%q is not one of none, request, require, verify", s.ClientAuth))
	}
	if _, ok := tlsVersions[s.MinTLSVersion]; !ok {
		return pipeline.FieldErr("minTLSVersion", fmt.Errorf("%q is not 1.2 or 1.3", s.MinTLSVersion))
	}
	if !s.HTTPS {
		return nil
	}
	_, err := s.tlsConfig()
	return err
}

// tlsConfig builds the TLS configuration of one generation from the spec.
// The listener hands it to each new handshake (tls.Config
// GetConfigForClient), so a later generation's certificates apply to new
// handshakes while the connections already open carry on. Session tickets
// are the listener's and outlive generations; crypto/tls checks a resumed
// session's client certificate chain against the current generation's
// client CAs (see TestTLSClientCAReloadRefusesResumption).
func (s *Spec) tlsConfig() (*tls.Config, error) { return s.tlsConfigWith(nil) }

// ACMETLSProtocol is the ALPN protocol of the ACME TLS-ALPN-01 challenge
// (RFC 8737). A handshake that offers only it is answered by
// Options.GetCertificate alone, never with a static certificate.
const ACMETLSProtocol = "acme-tls/1"

// tlsConfigWith is tlsConfig with the certificate hook of Options: names
// that no static certificate covers (exactly or by wildcard) are asked of
// hook before the default certificate is used, and hook answers the
// TLS-ALPN-01 challenge, whose protocol the configuration then offers.
func (s *Spec) tlsConfigWith(hook func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	certs, err := s.certificates()
	if err != nil {
		return nil, err
	}
	cas, err := s.clientCAs()
	if err != nil {
		return nil, err
	}
	auth := tls.NoClientCert
	switch {
	case s.ClientAuth != "":
		auth = clientAuthTypes[s.ClientAuth]
	case cas != nil:
		auth = tls.RequireAndVerifyClientCert
	}
	if auth == tls.RequireAndVerifyClientCert && cas == nil {
		return nil, pipeline.FieldErr("clientAuth", errors.New("verify needs a client CA (caCertBase64 or clientCAFiles)"))
	}
	protos := []string{"http/1.1"}
	if s.HTTP2 {
		protos = []string{"h2", "http/1.1"}
	}
	get := certs.get
	if hook != nil {
		get = certs.withHook(hook)
		protos = append(protos, ACMETLSProtocol)
	}
	return &tls.Config{ // #nosec G402 -- tlsVersions holds TLS 1.2 and 1.3 only
		MinVersion:     tlsVersions[s.MinTLSVersion],
		GetCertificate: get,
		ClientAuth:     auth,
		ClientCAs:      cas,
		NextProtos:     protos,
	}, nil
}

// certSet chooses a certificate by the SNI server name.
type certSet struct {
	exact map[string]*tls.Certificate // lower-case DNS name
	wild  map[string]*tls.Certificate // "example.com" for "*.example.com"
	def   *tls.Certificate
}

func (cs *certSet) add(c *tls.Certificate) {
	if cs.def == nil {
		cs.def = c
	}
	names := c.Leaf.DNSNames
	if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
		names = []string{c.Leaf.Subject.CommonName}
	}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		m, key := cs.exact, n
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			m, key = cs.wild, rest
		}
		if _, taken := m[key]; !taken { // the first certificate wins
			m[key] = c
		}
	}
}

// get returns the certificate for the name the client asked for: an exact
// name, else a wildcard one level up, else the default.
func (cs *certSet) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := cs.match(hello.ServerName); c != nil {
		return c, nil
	}
	if cs.def == nil {
		return nil, fmt.Errorf("no certificate for %q", hello.ServerName)
	}
	return cs.def, nil
}

// match returns the certificate for an exact name, else a wildcard one
// level up, else nil.
func (cs *certSet) match(serverName string) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if c := cs.exact[name]; c != nil {
		return c
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if c := cs.wild[parent]; c != nil {
			return c
		}
	}
	return nil
}

// withHook returns get with hook consulted after the static names and
// before the default certificate; a TLS-ALPN-01 handshake goes to hook
// only.
func (cs *certSet) withHook(hook func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMETLSProtocol {
			return hook(hello)
		}
		if c := cs.match(hello.ServerName); c != nil {
			return c, nil
		}
		c, err := hook(hello)
		if c != nil && err == nil {
			return c, nil
		}
		if cs.def != nil {
			return cs.def, nil
		}
		if err == nil {
			err = fmt.Errorf("no certificate for %q", hello.ServerName)
		}
		return nil, err
	}
}

// certificates loads the spec's certificates in their default order:
// certBase64, certs by name, certFiles.
func (s *Spec) certificates() (*certSet, error) {
	cs := &certSet{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	if s.CertBase64 != "" || s.KeyBase64 != "" {
		certPEM, err := base64.StdEncoding.DecodeString(s.CertBase64)
		if err != nil {
			return nil, pipeline.FieldErr("certBase64", err)
		}
		keyPEM, err := base64.StdEncoding.DecodeString(s.KeyBase64)
		if err != nil {
			return nil, pipeline.FieldErr("keyBase64", err)
		}
		c, err := keyPair(certPEM, keyPEM, "certBase64", "keyBase64")
		if err != nil {
			return nil, err
		}
		cs.add(c)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Keys)) {
		if _, ok := s.Certs[name]; !ok {
			return nil, pipeline.FieldErr("keys."+name, fmt.Errorf("no certificate certs.%s for this key", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Certs)) {
		key, ok := s.Keys[name]
		if !ok {
			return nil, pipeline.FieldErr("keys."+name, fmt.Errorf("missing: certs.%s needs its key", name))
		}
		c, err := keyPair([]byte(s.Certs[name]), []byte(key), "certs."+name, "keys."+name)
		if err != nil {
			return nil, err
		}
		cs.add(c)
	}
	for i, f := range s.CertFiles {
		ff := "certFiles[" + strconv.Itoa(i) + "]"
		certPEM, err := os.ReadFile(f.Cert)
		if err != nil {
			return nil, pipeline.FieldErr(ff+".cert", err)
		}
		keyPEM, err := os.ReadFile(f.Key)
		if err != nil {
			return nil, pipeline.FieldErr(ff+".key", err)
		}
		c, err := keyPair(certPEM, keyPEM, ff+".cert", ff+".key")
		if err != nil {
			return nil, err
		}
		cs.add(c)
	}
	if cs.def == nil && !s.AutoCert {
		return nil, pipeline.FieldErr("certs", errors.New("https needs a certificate (certs and keys, certBase64 and keyBase64, or certFiles) or autoCert: true"))
	}
	return cs, nil
}

// keyPair parses a certificate chain and its key; an error names the
// field at fault: the certificate's when it does not parse, else the
// key's.
func keyPair(certPEM, keyPEM []byte, certField, keyField string) (*tls.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, pipeline.FieldErr(certField, errors.New("no PEM CERTIFICATE block"))
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return nil, pipeline.FieldErr(certField, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, pipeline.FieldErr(keyField, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, pipeline.FieldErr(certField, err)
		}
	}
	return &c, nil
}

// clientCAs returns the pool of client CAs, or nil when there is none.
func (s *Spec) clientCAs() (*x509.CertPool, error) {
	if s.CACertBase64 == "" && len(s.ClientCAFiles) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if s.CACertBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(s.CACertBase64)
		if err != nil {
			return nil, pipeline.FieldErr("caCertBase64", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, pipeline.FieldErr("caCertBase64", errors.New("no PEM certificate"))
		}
	}
	for i, f := range s.ClientCAFiles {
		ff := "clientCAFiles[" + strconv.Itoa(i) + "]"
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, pipeline.FieldErr(ff, err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, pipeline.FieldErr(ff, fmt.Errorf("%s: no PEM certificate", f))
		}
	}
	return pool, nil
}
