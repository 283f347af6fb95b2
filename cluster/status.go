package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// MemberStatus is one member's status: its identity, what its latest
// heartbeat said, and when the leader heard it.
type MemberStatus struct {
	Member `yaml:",inline"`
	// Voter: the member votes (a primary). A secondary does not.
	Voter bool `json:"voter" yaml:"voter"`
	// State is the member's raft state: Leader, Follower, Candidate or
	// Shutdown; empty if the leader has not heard from it.
	State string `json:"state,omitempty" yaml:"state,omitempty"`
	// LastContact is when the member last heard from a leader (for the
	// leader itself, the time of the report).
	LastContact time.Time `json:"lastContact,omitzero" yaml:"lastContact,omitempty"`
	// AppliedIndex is the raft index of the last change the member
	// applied; Revision is its store revision.
	AppliedIndex uint64 `json:"appliedIndex,omitempty" yaml:"appliedIndex,omitempty"`
	Revision     int64  `json:"revision,omitempty" yaml:"revision,omitempty"`
	// Heartbeat is when the leader last heard from the member; Alive is
	// whether that was within three heartbeat intervals.
	Heartbeat time.Time `json:"heartbeat,omitzero" yaml:"heartbeat,omitempty"`
	Alive     bool      `json:"alive" yaml:"alive"`
	// Objects is what the member's object status function reports (see
	// Node.SetObjectStatus): typically its Gateway's Status.
	Objects any `json:"objects,omitempty" yaml:"objects,omitempty"`
}

// Status is every member's status: the answer of
// /apis/v2/status/members.
type Status struct {
	// Leader is the leader's ID, empty if none is known.
	Leader string `json:"leader" yaml:"leader"`
	// From is the ID of the member that composed the answer: the leader,
	// or the member asked if the leader could not be reached (then only
	// its own status is current).
	From    string         `json:"from" yaml:"from"`
	Members []MemberStatus `json:"members" yaml:"members"`
}

// selfStatus is this member's own report.
func (n *Node) selfStatus() MemberStatus {
	st := MemberStatus{Member: n.self, Voter: n.self.Role == Primary, State: n.raft.State().String()}
	if n.raft.State() == raft.Leader {
		st.LastContact = time.Now()
	} else {
		st.LastContact = n.raft.LastContact()
	}
	st.AppliedIndex, st.Revision = n.fsm.position()
	if f := n.status.Load(); f != nil {
		st.Objects = (*f)()
	}
	return st
}

// heartbeats reports this member's status to the leader every interval
// and at once when it becomes the leader.
func (n *Node) heartbeats() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	n.beat()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.raft.LeaderCh():
		}
		n.beat()
	}
}

func (n *Node) beat() {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.HeartbeatInterval)
	defer cancel()
	st := n.selfStatus()
	_, id := n.raft.LeaderWithID()
	switch {
	case id == "":
		return
	case string(id) == n.self.ID:
		n.record(st, time.Now())
		if err := n.reconcile(ctx, st.Member); err != nil && n.ctx.Err() == nil {
			n.log.Warn("cluster: recording this member's identity", "error", err)
		}
	default:
		m, ok := n.fsm.member(string(id))
		if !ok || m.AdminURL == "" {
			return
		}
		err := n.call(ctx, m.AdminURL, http.MethodPost, pathHeartbeat, st, nil, true)
		if err != nil && n.ctx.Err() == nil {
			n.log.Debug("cluster: heartbeat to the leader", "leader", id, "error", err)
		}
	}
}

func (n *Node) record(st MemberStatus, at time.Time) {
	st.Heartbeat = at
	n.beatMu.Lock()
	n.beats[st.ID] = st
	n.beatMu.Unlock()
}

// reconcile, on the leader, brings a member's address and identity in the
// replicated state up to date with what it reports (a member restarted
// with a new admin URL or raft address). A member not in the
// configuration is not added back: it was removed, and must join.
func (n *Node) reconcile(ctx context.Context, m Member) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) != m.ID {
			continue
		}
		// Keep the suffrage the configuration holds: a role changes by
		// leaving and joining again.
		if s.Suffrage == raft.Voter {
			m.Role = Primary
		} else {
			m.Role = Secondary
		}
		if cur, ok := n.fsm.member(m.ID); ok && cur == m && string(s.Address) == m.RaftAddr {
			return nil
		}
		return n.addLocal(ctx, m)
	}
	return ErrRemoved
}

func (n *Node) handleHeartbeat(w http.ResponseWriter, r *http.Request, body []byte) {
	var st MemberStatus
	if err := json.Unmarshal(body, &st); err != nil || !idRE.MatchString(st.ID) {
		writeError(w, http.StatusBadRequest, "heartbeat: want a member status with an id")
		return
	}
	if !n.leaderOnly(w) {
		return
	}
	ctx, cancel := n.bound(r.Context())
	defer cancel()
	if err := n.reconcile(ctx, st.Member); err != nil {
		writeError(w, errorStatus(err), "heartbeat: "+err.Error())
		return
	}
	n.record(st, time.Now())
	w.WriteHeader(http.StatusNoContent)
}

// Status returns every member's status as the leader knows it; on a
// follower it asks the leader, and falls back to its own view (with only
// its own status current) if the leader cannot be reached.
func (n *Node) Status(ctx context.Context) Status {
	if !n.IsLeader() {
		if _, id := n.raft.LeaderWithID(); id != "" {
			if m, ok := n.fsm.member(string(id)); ok && m.AdminURL != "" {
				var cs Status
				if err := n.call(ctx, m.AdminURL, http.MethodGet, pathStatus, nil, &cs, true); err == nil {
					return cs
				}
			}
		}
	}
	return n.localStatus()
}

// localStatus composes the status from this member's configuration and
// the heartbeats it received (only the leader receives them).
func (n *Node) localStatus() Status {
	cs := Status{Leader: n.Leader(), From: n.self.ID}
	members, err := n.Members()
	if err != nil {
		members = []MemberStatus{{Member: n.self, Voter: n.self.Role == Primary}}
	}
	now := time.Now()
	n.beatMu.Lock()
	defer n.beatMu.Unlock()
	for _, m := range members {
		st := m
		if m.ID == n.self.ID {
			st = n.selfStatus()
			st.Voter = m.Voter
			st.Heartbeat = now
		} else if b, ok := n.beats[m.ID]; ok {
			st = b
			st.Voter = m.Voter
			st.RaftAddr = m.RaftAddr
		}
		st.Alive = !st.Heartbeat.IsZero() && now.Sub(st.Heartbeat) < 3*n.cfg.HeartbeatInterval
		cs.Members = append(cs.Members, st)
	}
	sort.Slice(cs.Members, func(i, j int) bool { return cs.Members[i].ID < cs.Members[j].ID })
	return cs
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(headerToLeader) != "" {
		if !n.leaderOnly(w) {
			return
		}
		writeJSON(w, http.StatusOK, n.localStatus())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, n.Status(ctx))
}
