// Package zookeeper is the ZookeeperServiceRegistry object kind: service
// instances kept as znodes in ZooKeeper, watched for changes.
//
// Layout: each instance is a znode whose data is a JSON document
// (discovery.Record), under <prefix>/<service>/<instanceID>:
//
//	/services/orders/orders-1 → {"address": "10.0.0.7", "port": 8080, "weight": 10}
//
// The registry reads the children of the services the gateway's pools
// watch, with ZooKeeper watches on them and on each instance, so that a
// change reaches the pools at once; it reads them again every
// syncInterval, which is how it notices that ZooKeeper has become
// unreachable (the pools then keep the last known instances, reported
// stale). Ephemeral znodes make an instance disappear with its session.
//
//	kind: ZookeeperServiceRegistry
//	name: zk-registry
//	zkservices: [127.0.0.1:2181]
//	prefix: /services
//	connTimeout: 6s
//	username: sluice        # digest auth, optional
//	password: secret
//	tls: {caFile: /etc/sluice/zk-ca.pem}   # secureClientPort, optional
//
// Register the kind with sluice.WithObjectKinds(zookeeper.Kind).
package zookeeper

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery"
	"github.com/sluicegw/sluice/pipeline"
)

// KindName is the kind's name in specs.
const KindName = "ZookeeperServiceRegistry"

// DefaultPrefix is the parent znode of the services when prefix is empty.
const DefaultPrefix = "/services"

// Spec is the ZookeeperServiceRegistry configuration, with Easegress's
// field names (zkservices, prefix, connTimeout, syncInterval) and more.
type Spec struct {
	// ZKServices are the ZooKeeper servers, host:port; at least one.
	ZKServices []string `yaml:"zkservices"`
	// Prefix is the znode under which the services live. Empty means
	// DefaultPrefix.
	Prefix string `yaml:"prefix,omitempty"`
	// ConnTimeout is the ZooKeeper session timeout. 0 means 6s.
	ConnTimeout time.Duration `yaml:"connTimeout,omitempty"`
	// Username and Password authenticate with the digest scheme; empty
	// means no auth.
	Username string `yaml:"username,omitempty"`
	Password string `yaml:"password,omitempty"`
	// TLS connects with TLS (ZooKeeper's secureClientPort); nil means a
	// plain connection.
	TLS *discovery.TLSSpec `yaml:"tls,omitempty"`
	// SyncInterval is how often the znodes are read again besides the
	// watches, and the pause before a failed sync is retried. 0 means 10s.
	SyncInterval time.Duration `yaml:"syncInterval,omitempty"`
	// Timeout bounds each sync. 0 means 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
}

// Validate checks s; errors name the field.
func (s *Spec) Validate() error {
	if len(s.ZKServices) == 0 {
		return pipeline.FieldErr("zkservices", fmt.Errorf("%w: at least one server is required", discovery.ErrBadSpec))
	}
	for i, a := range s.ZKServices {
		if a == "" || strings.ContainsAny(a, "/ ") {
			return pipeline.FieldErr(fmt.Sprintf("zkservices[%d]", i), fmt.Errorf("%w: %q is not host:port", discovery.ErrBadSpec, a))
		}
	}
	if s.Prefix != "" && (!strings.HasPrefix(s.Prefix, "/") || path.Clean(s.Prefix) != s.Prefix) {
		return pipeline.FieldErr("prefix", fmt.Errorf("%w: %q must be a clean absolute znode path", discovery.ErrBadSpec, s.Prefix))
	}
	if s.ConnTimeout < 0 {
		return pipeline.FieldErr("connTimeout", fmt.Errorf("%w: must not be negative", discovery.ErrBadSpec))
	}
	if (s.Username == "") != (s.Password == "") {
		return pipeline.FieldErr("username", fmt.Errorf("%w: username and password go together", discovery.ErrBadSpec))
	}
	if s.TLS != nil {
		if err := s.TLS.Validate("tls"); err != nil {
			return err
		}
	}
	return discovery.CheckDurations(s.SyncInterval, s.Timeout)
}

// Kind is the ZookeeperServiceRegistry object kind.
var Kind = sluice.DefineObject(KindName, sluice.CategorySystem, build).
	WithDescription("service instances kept as JSON znodes in ZooKeeper, watched")

func build(env sluice.Env, spec *Spec) (sluice.Object, error) {
	cfg, err := spec.TLS.Config("tls")
	if err != nil {
		return nil, err
	}
	b := &backend{spec: *spec, log: env.Logger, tls: cfg}
	if b.spec.Prefix == "" {
		b.spec.Prefix = DefaultPrefix
	}
	if b.spec.ConnTimeout == 0 {
		b.spec.ConnTimeout = 6 * time.Second
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return discovery.NewRegistry(b, discovery.Options{
		Kind: KindName, Name: env.Name, Logger: env.Logger, Clock: env.Clock,
		SyncInterval: spec.SyncInterval, Timeout: spec.Timeout,
		Close: b.close,
	}), nil
}

// errNotConnected is Fetch's error while the client has no session.
var errNotConnected = errors.New("zookeeper: not connected")

// backend reads the znodes. The connection is made by the first Fetch
// (Build must not start goroutines), on the registry's goroutine.
type backend struct {
	spec Spec
	log  *slog.Logger
	tls  *tls.Config // nil: plain connections

	mu     sync.Mutex // guards conn against close
	conn   *zk.Conn
	closed bool
	authed bool
	// Run goroutine only: the watches the last Fetch set, and its result,
	// which stands while none of them has fired (re-reading would pile up
	// watches on the same znodes).
	watches []<-chan zk.Event
	armed   bool
	last    map[string][]pipeline.ServiceInstance
	lastFor []string
}

// zkLogger sends the client's log lines to slog at debug level.
type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }

func (b *backend) getConn() (*zk.Conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, sluice.ErrClosed
	}
	if b.conn == nil {
		cfg := b.tls
		dial := func(network, address string, timeout time.Duration) (net.Conn, error) {
			d := &net.Dialer{Timeout: timeout}
			if cfg != nil {
				return tls.DialWithDialer(d, network, address, cfg)
			}
			return d.Dial(network, address)
		}
		c, _, err := zk.Connect(b.spec.ZKServices, b.spec.ConnTimeout, zk.WithLogger(zkLogger{b.log}), zk.WithLogInfo(false), zk.WithDialer(dial))
		if err != nil {
			return nil, err
		}
		b.conn = c
	}
	return b.conn, nil
}

// connected waits, up to ctx, for the client to have a session.
func (b *backend) connected(ctx context.Context, c *zk.Conn) error {
	for c.State() != zk.StateHasSession {
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (%s)", errNotConnected, c.State())
		case <-t.C:
		}
	}
	if !b.authed && b.spec.Username != "" {
		if err := c.AddAuth("digest", []byte(b.spec.Username+":"+b.spec.Password)); err != nil {
			return fmt.Errorf("zookeeper auth: %w", err)
		}
		b.authed = true
	}
	return nil
}

// Fetch reads each service's instances, setting watches. The reads run on
// a goroutine of their own, so that a read the client holds while it
// reconnects does not hold the registry past ctx: such a read ends when
// the connection does (at Close at the latest), and its result is
// dropped.
func (b *backend) Fetch(ctx context.Context, services []string) (map[string][]pipeline.ServiceInstance, error) {
	c, err := b.getConn()
	if err != nil {
		return nil, err
	}
	if err := b.connected(ctx, c); err != nil {
		b.armed = false
		return nil, err
	}
	if b.armed && slices.Equal(services, b.lastFor) {
		return b.last, nil
	}
	b.armed = false
	type result struct {
		out     map[string][]pipeline.ServiceInstance
		watches []<-chan zk.Event
		err     error
	}
	done := make(chan result, 1)
	go func() {
		out, watches, err := b.read(c, services)
		done <- result{out, watches, err}
	}()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("zookeeper: %w", ctx.Err())
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		b.watches, b.armed, b.last, b.lastFor = r.watches, true, r.out, slices.Clone(services)
		return r.out, nil
	}
}

// read reads the services' znodes through c, setting watches; it touches
// no field of b.
func (b *backend) read(c *zk.Conn, services []string) (map[string][]pipeline.ServiceInstance, []<-chan zk.Event, error) {
	var watches []<-chan zk.Event
	out := map[string][]pipeline.ServiceInstance{}
	for _, svc := range services {
		dir := path.Join(b.spec.Prefix, svc)
		children, _, ch, err := c.ChildrenW(dir)
		if errors.Is(err, zk.ErrNoNode) {
			// Watch for the service's znode to appear.
			_, _, ch, err = c.ExistsW(dir)
			if err != nil {
				return nil, nil, err
			}
			watches = append(watches, ch)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		watches = append(watches, ch)
		for _, id := range children {
			data, _, dch, err := c.GetW(dir + "/" + id)
			if errors.Is(err, zk.ErrNoNode) {
				continue // gone since the listing; the children watch fires
			}
			if err != nil {
				return nil, nil, err
			}
			watches = append(watches, dch)
			inst, err := discovery.ParseRecord(svc, id, data)
			if err != nil {
				continue
			}
			out[svc] = append(out[svc], inst)
		}
	}
	return out, watches, nil
}

// Wait returns when one of the watches of the last Fetch fires.
func (b *backend) Wait(ctx context.Context, _ []string) error {
	cases := make([]reflect.SelectCase, 0, len(b.watches)+1)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
	for _, ch := range b.watches {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	i, v, ok := reflect.Select(cases)
	if i == 0 {
		return ctx.Err()
	}
	b.armed = false
	if ok {
		if ev, _ := v.Interface().(zk.Event); ev.Err != nil {
			return ev.Err
		}
	}
	return nil
}

func (b *backend) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.conn != nil {
		b.conn.Close()
		b.conn = nil
	}
	return nil
}

var (
	_ discovery.Backend = (*backend)(nil)
	_ discovery.Waiter  = (*backend)(nil)
)
