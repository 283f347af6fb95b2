package pipeline

import (
	"fmt"
	"sort"
	"sync"
)

// Registry holds filter kinds by name. It is a value owned by whoever builds
// pipelines (a Gateway has one); there is no global registry. A Registry is
// safe for concurrent use.
type Registry struct {
	mu       sync.RWMutex
	kinds    map[string]Kind
	policies map[string]PolicyKind
}

// NewRegistry returns a registry holding kinds. A duplicate name is an error.
func NewRegistry(kinds ...Kind) (*Registry, error) {
	r := &Registry{kinds: map[string]Kind{}}
	if err := r.Register(kinds...); err != nil {
		return nil, err
	}
	return r, nil
}

// Register adds kinds. It adds none of them if any is invalid or already there.
func (r *Registry) Register(kinds ...Kind) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kinds == nil {
		r.kinds = map[string]Kind{}
	}
	seen := map[string]bool{}
	for _, k := range kinds {
		if k.Name == "" {
			return fmt.Errorf("filter kind with no name")
		}
		if k.Build == nil {
			return fmt.Errorf("filter kind %q: no Build function", k.Name)
		}
		if _, ok := r.kinds[k.Name]; ok || seen[k.Name] {
			return fmt.Errorf("%w: %q", ErrDuplicateKind, k.Name)
		}
		for _, res := range k.Results {
			if res == Continue {
				return fmt.Errorf("filter kind %q: the empty result is implicit and must not be declared", k.Name)
			}
		}
		seen[k.Name] = true
	}
	for _, k := range kinds {
		r.kinds[k.Name] = k
	}
	return nil
}

// Kind returns the kind called name.
func (r *Registry) Kind(name string) (Kind, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.kinds[name]
	return k, ok
}

// Kinds returns every kind, sorted by name.
func (r *Registry) Kinds() []Kind {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Kind, 0, len(r.kinds))
	for _, k := range r.kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RegisterPolicies adds policy kinds. It adds none of them if any is
// invalid or already there.
func (r *Registry) RegisterPolicies(kinds ...PolicyKind) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.policies == nil {
		r.policies = map[string]PolicyKind{}
	}
	seen := map[string]bool{}
	for _, k := range kinds {
		if k.Name == "" || k.Build == nil {
			return fmt.Errorf("policy kind %q: needs a name and a Build function", k.Name)
		}
		if _, ok := r.policies[k.Name]; ok || seen[k.Name] {
			return fmt.Errorf("%w: policy kind %q", ErrDuplicateKind, k.Name)
		}
		seen[k.Name] = true
	}
	for _, k := range kinds {
		r.policies[k.Name] = k
	}
	return nil
}

// PolicyKind returns the policy kind called name.
func (r *Registry) PolicyKind(name string) (PolicyKind, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	k, ok := r.policies[name]
	return k, ok
}

// PolicyKinds returns every policy kind, sorted by name.
func (r *Registry) PolicyKinds() []PolicyKind {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]PolicyKind, 0, len(r.policies))
	for _, k := range r.policies {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
