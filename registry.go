package sluice

import (
	"sync"

	"github.com/sluicegw/sluice/pipeline"
)

// registrySlots are where the filters of a gateway's pipelines find the
// service registries: every object that implements pipeline.ServiceRegistry
// (the mesh/discovery kinds, an embedder's own) is published in the slot of
// its name. A filter holds the slot, not the object, so that it follows the
// registry across updates and finds one applied after the filter was built.
type registrySlots struct {
	mu    sync.Mutex
	slots map[string]*registrySlot
}

// lookup returns the slot called name, making it if needed. It is the
// gateway's pipeline.Env.Registries.
func (rs *registrySlots) lookup(name string) (pipeline.ServiceRegistry, bool) {
	return rs.slot(name), true
}

func (rs *registrySlots) slot(name string) *registrySlot {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.slots == nil {
		rs.slots = map[string]*registrySlot{}
	}
	s, ok := rs.slots[name]
	if !ok {
		s = &registrySlot{watches: map[*slotWatch]struct{}{}}
		rs.slots[name] = s
	}
	return s
}

// set publishes reg as the live registry called name; nil unpublishes it.
func (rs *registrySlots) set(name string, reg pipeline.ServiceRegistry) {
	rs.mu.Lock()
	s, ok := rs.slots[name]
	rs.mu.Unlock()
	if !ok && reg == nil {
		return
	}
	if !ok {
		s = rs.slot(name)
	}
	s.set(reg)
}

// registrySlot is a pipeline.ServiceRegistry that forwards to the live
// registry of its name and moves its watches to each new generation.
type registrySlot struct {
	mu      sync.Mutex // guards reg and watches, and serialises set
	reg     pipeline.ServiceRegistry
	watches map[*slotWatch]struct{}
}

// slotWatch is one Watch on a slot: its subscription to the live registry.
type slotWatch struct {
	service string
	notify  func()
	stop    func() // the live registry's stop; nil without one
}

func (s *registrySlot) Instances(service string) ([]pipeline.ServiceInstance, error) {
	s.mu.Lock()
	reg := s.reg
	s.mu.Unlock()
	if reg == nil {
		return nil, pipeline.ErrNoRegistry
	}
	return reg.Instances(service)
}

func (s *registrySlot) Watch(service string, notify func()) (stop func()) {
	w := &slotWatch{service: service, notify: notify}
	s.mu.Lock()
	s.watches[w] = struct{}{}
	if s.reg != nil {
		w.stop = s.reg.Watch(service, notify)
	}
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.watches, w)
			stop := w.stop
			w.stop = nil
			s.mu.Unlock()
			if stop != nil {
				stop()
			}
		})
	}
}

// set moves the watches from the previous registry to reg and tells the
// watchers, whose instances may have changed with it.
func (s *registrySlot) set(reg pipeline.ServiceRegistry) {
	s.mu.Lock()
	if s.reg == reg {
		s.mu.Unlock()
		return
	}
	s.reg = reg
	var stops []func()
	notify := make([]func(), 0, len(s.watches))
	for w := range s.watches {
		if w.stop != nil {
			stops = append(stops, w.stop)
		}
		w.stop = nil
		if reg != nil {
			w.stop = reg.Watch(w.service, w.notify)
		}
		notify = append(notify, w.notify)
	}
	s.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	for _, n := range notify {
		n()
	}
}

var _ pipeline.ServiceRegistry = (*registrySlot)(nil)
