package discovery

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// ErrBadSpec marks an invalid registry spec; errors wrapping it are
// *pipeline.FieldError values naming the field.
var ErrBadSpec = errors.New("bad registry spec")

// TLSSpec configures TLS to a registry's servers:
//
//	tls:
//	  caFile: /etc/sluice/registry-ca.pem
//	  certFile: /etc/sluice/client.pem     # client certificate, optional
//	  keyFile: /etc/sluice/client-key.pem
//
// The zero value verifies the servers against the system roots.
type TLSSpec struct {
	// CAFile is a PEM file of CA certificates trusted in addition to the
	// system roots. Empty means none.
	CAFile string `yaml:"caFile,omitempty"`
	// CertFile and KeyFile are the client certificate and its key, PEM;
	// set both or neither.
	CertFile string `yaml:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty"`
	// ServerName is the name the servers' certificates must carry. Empty
	// means each server's host.
	ServerName string `yaml:"serverName,omitempty"`
	// InsecureSkipVerify accepts any server certificate. Only for tests.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify,omitempty"`
}

// Validate checks t; field is its field path.
func (t *TLSSpec) Validate(field string) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return pipeline.FieldErr(field+".certFile", fmt.Errorf("%w: certFile and keyFile go together", ErrBadSpec))
	}
	return nil
}

// Config reads the files of t and returns the TLS configuration; a nil t
// returns nil. field names t in errors.
func (t *TLSSpec) Config(field string) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} // #nosec G402 -- the spec's explicit opt-out
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, pipeline.FieldErr(field+".caFile", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, pipeline.FieldErr(field+".caFile", fmt.Errorf("%w: no PEM certificate in %s", ErrBadSpec, t.CAFile))
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		c, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, pipeline.FieldErr(field+".certFile", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// HTTPClient returns a client for a registry's REST API with t's TLS
// settings (nil t: the defaults) and timeout as its overall limit.
func HTTPClient(t *TLSSpec, field string, timeout time.Duration) (*http.Client, error) {
	cfg, err := t.Config(field)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     cfg,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// CheckDurations checks that interval and timeout are not negative.
func CheckDurations(interval, timeout time.Duration) error {
	if interval < 0 {
		return pipeline.FieldErr("syncInterval", fmt.Errorf("%w: must not be negative", ErrBadSpec))
	}
	if timeout < 0 {
		return pipeline.FieldErr("timeout", fmt.Errorf("%w: must not be negative", ErrBadSpec))
	}
	return nil
}

// Record is how the key-value registries (etcd, ZooKeeper) store one
// instance: a JSON document under <prefix><service>/<instanceID>, with
// Easegress's field names:
//
//	{"serviceName": "orders", "instanceID": "orders-1",
//	 "address": "10.0.0.7", "port": 8080, "scheme": "http",
//	 "tags": ["v2"], "weight": 10, "metadata": {"zone": "a"},
//	 "status": "UP"}
//
// status is UP (the default when absent) or anything else for down.
type Record struct {
	ServiceName string            `json:"serviceName,omitempty"`
	InstanceID  string            `json:"instanceID,omitempty"`
	Address     string            `json:"address"`
	Port        int               `json:"port"`
	Scheme      string            `json:"scheme,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Weight      int               `json:"weight,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Status      string            `json:"status,omitempty"`
}

// ParseRecord decodes a Record stored under the key of service and id
// (which fill in what the document leaves out) into an instance.
func ParseRecord(service, id string, b []byte) (pipeline.ServiceInstance, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return pipeline.ServiceInstance{}, fmt.Errorf("instance %s/%s: %w", service, id, err)
	}
	if rec.InstanceID != "" {
		id = rec.InstanceID
	}
	inst := pipeline.ServiceInstance{
		ID:       id,
		Service:  service,
		Address:  rec.Address,
		Port:     rec.Port,
		Scheme:   strings.ToLower(rec.Scheme),
		Tags:     rec.Tags,
		Weight:   rec.Weight,
		Metadata: rec.Metadata,
		Healthy:  rec.Status == "" || strings.EqualFold(rec.Status, "UP"),
	}
	if err := CheckInstance(inst); err != nil {
		return pipeline.ServiceInstance{}, fmt.Errorf("instance %s/%s: %w", service, id, err)
	}
	return inst, nil
}

// CheckInstance reports why inst cannot be a proxy server, if it cannot:
// no address, a port outside 1..65535, a scheme other than http or https,
// a negative weight.
func CheckInstance(inst pipeline.ServiceInstance) error {
	switch {
	case inst.Address == "" || strings.ContainsAny(inst.Address, "/?#@ \t\r\n"):
		return fmt.Errorf("bad address %q", inst.Address)
	case inst.Port < 1 || inst.Port > 65535:
		return fmt.Errorf("bad port %d", inst.Port)
	case inst.Scheme != "" && inst.Scheme != "http" && inst.Scheme != "https":
		return fmt.Errorf("bad scheme %q", inst.Scheme)
	case inst.Weight < 0:
		return fmt.Errorf("bad weight %d", inst.Weight)
	}
	return nil
}
