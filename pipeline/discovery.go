package pipeline

import (
	"net"
	"strconv"
)

// ServiceInstance is one instance of a service, as a service registry knows
// it. Every backend (etcd, ZooKeeper, Consul, Eureka, Nacos, DNS, a user's
// own) maps its records to this model.
type ServiceInstance struct {
	// ID names the instance within its service; unique per service.
	ID string `json:"id" yaml:"id"`
	// Service is the name of the service the instance belongs to.
	Service string `json:"service" yaml:"service"`
	// Address is the instance's host: an IP address or a DNS name.
	Address string `json:"address" yaml:"address"`
	// Port is the instance's port, 1..65535.
	Port int `json:"port" yaml:"port"`
	// Scheme is http or https; empty means http.
	Scheme string `json:"scheme,omitempty" yaml:"scheme,omitempty"`
	// Tags label the instance; a Proxy pool's serverTags select by them.
	Tags []string `json:"tags,omitempty" yaml:"tags,omitempty"`
	// Weight is the instance's share for weighted load balancing; 0 or
	// more.
	Weight int `json:"weight,omitempty" yaml:"weight,omitempty"`
	// Metadata is the registry's free-form data about the instance.
	Metadata map[string]string `json:"metadata,omitempty" yaml:"metadata,omitempty"`
	// Healthy is false when the registry reports the instance down,
	// out of service or failing its checks; consumers skip such instances.
	Healthy bool `json:"healthy" yaml:"healthy"`
}

// URL returns the instance's base URL, scheme://address:port, with http
// as the scheme when Scheme is empty and IPv6 addresses bracketed.
func (i ServiceInstance) URL() string {
	scheme := i.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + net.JoinHostPort(i.Address, strconv.Itoa(i.Port))
}

// ServiceRegistry is a source of service instances that filters (the Proxy's
// pools with serviceRegistry and serviceName) consume. The built-in backends
// live in the mesh/discovery packages; an embedder may implement its own and
// make it an object of its gateway: every live object that implements
// ServiceRegistry is found by its name through Env.Registries.
//
// Concurrency: both methods are called from any goroutine, concurrently.
// Instances must not block on the network: it answers from what the
// registry knows (its cache), which a goroutine of the registry keeps up to
// date.
type ServiceRegistry interface {
	// Instances returns the instances of service the registry knows, in a
	// stable order, healthy or not. A non-nil error means the registry
	// could not refresh them at its last attempt (the backend is down, the
	// registry is not running yet, ErrNoRegistry): the instances returned
	// with it, if any, are the last known ones, which the caller may keep
	// using while it reports them stale. The caller must not modify the
	// slice.
	Instances(service string) ([]ServiceInstance, error)
	// Watch asks the registry to keep the instances of service up to date
	// and to call notify whenever they may have changed (instances added,
	// removed or marked down, the registry failing or recovering). notify
	// runs on a goroutine of the registry, must not block for long, and may
	// call Instances. stop ends the watch; notify is not called after stop
	// has returned. stop may be called more than once.
	Watch(service string, notify func()) (stop func())
}
