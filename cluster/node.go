package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/sluicegw/sluice"
)

// Member is one member's identity as the cluster records it.
type Member struct {
	ID       string `json:"id" yaml:"id"`
	Name     string `json:"name" yaml:"name"`
	Role     Role   `json:"role" yaml:"role"`
	RaftAddr string `json:"raftAddress" yaml:"raftAddress"`
	AdminURL string `json:"adminURL" yaml:"adminURL"`
}

// Node is one member of a cluster, and a sluice.Store whose records are
// replicated by raft: hand it to sluice.New with sluice.WithStore, and the
// gateway applies what any member commits.
//
// Commit runs on the leader: on a follower it is forwarded to the leader's
// admin handler and retried (exactly once in effect: every commit carries
// an ID the state machine remembers) until it succeeds or its context
// ends. List reads this member's copy, which may lag the leader by a
// moment; with a context from Linearizable it first learns the leader's
// commit index and waits until this member has applied it. Watch follows
// this member's copy.
//
// A Node is safe for concurrent use. Close leaves the cluster's membership
// as it is (the member is only absent); Leave removes it.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	trans  *raft.NetworkTransport
	stream *streamLayer
	bolt   *raftboltdb.BoltStore
	client *http.Client
	self   Member

	status atomic.Pointer[func() any]

	beatMu sync.Mutex
	beats  map[string]MemberStatus // by ID, on the leader

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open starts a member. With a data directory that holds raft state it
// rejoins its cluster (Bootstrap and Join are ignored); otherwise it
// bootstraps a new cluster or joins through one of cfg.Join, trying until
// ctx ends.
func Open(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: DataDir: %w", err)
	}
	hlog := newHCLogger(cfg.Logger)
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: opening the raft log in DataDir: %w", err)
	}
	closers = append(closers, bolt.Close)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot store in DataDir: %w", err)
	}
	has, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading the raft state: %w", err)
	}
	if !has && !cfg.Bootstrap && len(cfg.Join) == 0 {
		return nil, fmt.Errorf("%w: Bootstrap or Join is needed for a member without raft state", ErrBadConfig)
	}

	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.RaftAddr); err != nil {
			return nil, fmt.Errorf("cluster: RaftAddr: %w", err)
		}
	}
	var advertise net.Addr = ln.Addr()
	if cfg.AdvertiseAddr != "" {
		if advertise, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("%w: AdvertiseAddr: %w", ErrBadConfig, err)
		}
	}
	if tcp, ok := advertise.(*net.TCPAddr); !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("%w: AdvertiseAddr: %s is not an address other members can dial", ErrBadConfig, advertise)
	}
	stream := newStreamLayer(ln, advertise, cfg.TLS, cfg.Secret, cfg.Dial)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 2 * time.Second,
		Logger:  hlog,
	})
	closers = append(closers, trans.Close)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	f := newFSM()
	r, err := raft.NewRaft(rc, f, bolt, bolt, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: starting raft: %w", err)
	}
	closers = append(closers, func() error { return r.Shutdown().Error() })

	clientTLS := cfg.TLS.Clone()
	n := &Node{
		cfg: cfg, log: cfg.Logger, raft: r, fsm: f, trans: trans, stream: stream, bolt: bolt,
		client: &http.Client{Transport: &http.Transport{
			DialContext:         cfg.Dial,
			TLSClientConfig:     clientTLS,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		}},
		self: Member{
			ID: cfg.ID, Name: cfg.Name, Role: cfg.Role,
			RaftAddr: advertise.String(), AdminURL: strings.TrimSuffix(cfg.AdminURL, "/"),
		},
		beats: map[string]MemberStatus{},
	}
	closers = append(closers, func() error { n.client.CloseIdleConnections(); return nil })
	n.ctx, n.cancel = context.WithCancel(context.Background())
	closers = append(closers, func() error { n.cancel(); return nil })

	switch {
	case has:
		n.log.Info("cluster: rejoining with the raft state in the data directory", "id", cfg.ID)
	case cfg.Bootstrap:
		err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(n.self.RaftAddr),
		}}}).Error()
		if err != nil {
			return nil, fmt.Errorf("cluster: bootstrapping: %w", err)
		}
	default:
		if err := n.join(ctx); err != nil {
			return nil, err
		}
	}
	n.wg.Add(1)
	go n.heartbeats()
	return n, nil
}

// join asks the members in cfg.Join, in turn, to add this member, until
// one does or ctx ends.
func (n *Node) join(ctx context.Context) error {
	ctx, cancel := n.bound(ctx)
	defer cancel()
	var last error
	for {
		for _, base := range n.cfg.Join {
			err := n.call(ctx, strings.TrimSuffix(base, "/"), http.MethodPost, pathJoin, n.self, nil, false)
			if err == nil {
				return nil
			}
			last = err
			if !retryable(err) && ctx.Err() == nil {
				return fmt.Errorf("cluster: joining through %s: %w", base, err)
			}
		}
		if !n.pause(ctx) {
			return fmt.Errorf("cluster: joining: %w (last error: %w)", ErrNoLeader, last)
		}
	}
}

// SetObjectStatus sets the function whose result this member reports as
// its object status in its heartbeats: typically a Gateway's Status. It
// is called from the heartbeat goroutine and must be safe for that.
func (n *Node) SetObjectStatus(f func() any) {
	if f == nil {
		n.status.Store(nil)
		return
	}
	n.status.Store(&f)
}

// ID returns the member's ID.
func (n *Node) ID() string { return n.self.ID }

// Self returns the member's identity as it announces it.
func (n *Node) Self() Member { return n.self }

// IsLeader reports whether this member is the raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the ID of the leader this member knows of, or "".
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// State returns the raft state: "Leader", "Follower", "Candidate" or
// "Shutdown".
func (n *Node) State() string { return n.raft.State().String() }

// Commit applies ops atomically through the leader and returns the
// revision of the change. See Node for forwarding and retries.
func (n *Node) Commit(ctx context.Context, ops ...sluice.Op) (int64, error) {
	if err := checkOps(ops); err != nil {
		return 0, err
	}
	req := commitRequest{ID: newID(), Ops: ops}
	ctx, cancel := n.bound(ctx)
	defer cancel()
	var rev int64
	err := n.onLeader(ctx, func(ctx context.Context) (err error) {
		rev, err = n.commitLocal(ctx, req)
		return err
	}, http.MethodPost, pathCommit, req, func(b []byte) error {
		var out commitResponse
		err := json.Unmarshal(b, &out)
		rev = out.Revision
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cluster: commit: %w", err)
	}
	return rev, nil
}

type commitRequest struct {
	ID  string      `json:"id"`
	Ops []sluice.Op `json:"ops"`
}

type commitResponse struct {
	Revision int64 `json:"revision"`
}

// commitLocal applies a commit on this member, which must be the leader.
func (n *Node) commitLocal(ctx context.Context, req commitRequest) (int64, error) {
	if err := checkOps(req.Ops); err != nil {
		return 0, err
	}
	return n.apply(ctx, command{Type: cmdCommit, ID: req.ID, Ops: req.Ops})
}

// apply proposes c on this member, which must be the leader, and waits
// until this member's state machine has applied it (its ID is
// remembered there), leadership is lost, or ctx ends. It does not wait on
// raft's future: raft v1.7 leaves the futures of entries committed but
// not yet applied unanswered when it shuts down.
func (n *Node) apply(ctx context.Context, c command) (int64, error) {
	if c.ID == "" {
		c.ID = newID()
	}
	data, err := json.Marshal(c)
	if err != nil {
		return 0, err
	}
	term, err := n.leaderTerm()
	if err != nil {
		return 0, err
	}
	enqueue := n.cfg.ForwardTimeout
	if dl, ok := ctx.Deadline(); ok {
		enqueue = max(time.Until(dl), time.Millisecond)
	}
	n.raft.Apply(data, enqueue)
	for {
		if rev, ok := n.fsm.await(ctx, c.ID, applyPoll); ok {
			return rev, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if t, err := n.leaderTerm(); err != nil || t != term {
			return 0, raft.ErrLeadershipLost
		}
	}
}

// applyPoll is how often a wait for an entry checks that this member still
// leads.
const applyPoll = 20 * time.Millisecond

// leaderTerm returns the current term if this member leads.
func (n *Node) leaderTerm() (uint64, error) {
	term := n.raft.CurrentTerm()
	switch n.raft.State() {
	case raft.Leader:
		return term, nil
	case raft.Shutdown:
		return 0, raft.ErrRaftShutdown
	}
	return 0, raft.ErrNotLeader
}

// List returns every record and the revision of this member's copy; with
// a context from Linearizable, a copy at least as new as every commit
// acknowledged before the call.
func (n *Node) List(ctx context.Context) ([]sluice.Record, int64, error) {
	if linearizable(ctx) {
		if err := n.catchUp(ctx); err != nil {
			return nil, 0, fmt.Errorf("cluster: linearizable read: %w", err)
		}
	}
	recs, rev := n.fsm.list()
	return recs, rev, nil
}

type linearizableKey struct{}

// Linearizable returns a context that makes Node.List linearizable: the
// leader commits an empty entry (proving it still leads, and applying
// everything before it) and answers its applied index, and this member
// waits until it has applied as much. A linearizable read costs a round
// trip through the leader and a log entry, and waits while there is no
// leader.
func Linearizable(ctx context.Context) context.Context {
	return context.WithValue(ctx, linearizableKey{}, true)
}

func linearizable(ctx context.Context) bool {
	v, _ := ctx.Value(linearizableKey{}).(bool)
	return v
}

// catchUp waits until this member has applied everything the leader had
// committed when it was asked.
func (n *Node) catchUp(ctx context.Context) error {
	ctx, cancel := n.bound(ctx)
	defer cancel()
	var index uint64
	err := n.onLeader(ctx, func(ctx context.Context) (err error) {
		index, err = n.readIndexLocal(ctx)
		return err
	}, http.MethodGet, pathReadIndex, nil, func(b []byte) error {
		var out readIndexResponse
		err := json.Unmarshal(b, &out)
		index = out.Index
		return err
	})
	if err != nil {
		return err
	}
	return n.fsm.waitIndex(ctx, index)
}

type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// readIndexLocal, on the leader, commits an empty entry (proving its
// leadership, and that everything before the entry is applied here) and
// returns the applied index.
func (n *Node) readIndexLocal(ctx context.Context) (uint64, error) {
	if _, err := n.apply(ctx, command{Type: cmdNoop}); err != nil {
		return 0, err
	}
	idx, _ := n.fsm.position()
	return idx, nil
}

// Watch streams the changes after revision from as this member applies
// them. After a snapshot from the leader replaced this member's copy
// (it was too far behind), watches from before it are closed and Watch
// from an older revision returns sluice.ErrCompacted: list again.
func (n *Node) Watch(ctx context.Context, from int64) (<-chan sluice.Event, error) {
	return n.fsm.watch(ctx, from)
}

// Members returns the cluster's members as this member's raft
// configuration lists them, with the identity each announced.
func (n *Node) Members() ([]MemberStatus, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	meta := n.fsm.memberList()
	var out []MemberStatus
	for _, s := range f.Configuration().Servers {
		m, ok := meta[string(s.ID)]
		if !ok {
			m = Member{ID: string(s.ID), Name: string(s.ID), Role: Primary}
			if s.Suffrage != raft.Voter {
				m.Role = Secondary
			}
		}
		m.RaftAddr = string(s.Address)
		out = append(out, MemberStatus{Member: m, Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Leave removes this member from the cluster through the leader. Close it
// afterwards.
func (n *Node) Leave(ctx context.Context) error { return n.Remove(ctx, n.self.ID) }

// Remove removes the member id from the cluster through the leader.
func (n *Node) Remove(ctx context.Context, id string) error {
	ctx, cancel := n.bound(ctx)
	defer cancel()
	req := leaveRequest{ID: id}
	err := n.onLeader(ctx, func(ctx context.Context) error { return n.removeLocal(ctx, id) },
		http.MethodPost, pathLeave, req, nil)
	if err != nil {
		return fmt.Errorf("cluster: removing %q: %w", id, err)
	}
	return nil
}

type leaveRequest struct {
	ID string `json:"id"`
}

// removeLocal, on the leader, forgets a member's identity and removes it
// from the configuration (a leader removing itself steps down after).
func (n *Node) removeLocal(ctx context.Context, id string) error {
	if _, err := n.apply(ctx, command{Type: cmdForget, Member: &Member{ID: id}}); err != nil {
		return err
	}
	n.beatMu.Lock()
	delete(n.beats, id)
	n.beatMu.Unlock()
	term, err := n.leaderTerm()
	if err != nil {
		return err
	}
	n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ForwardTimeout)
	return n.awaitConfig(ctx, term, id, func(s *raft.Server) bool { return s == nil })
}

// awaitConfig waits until the latest configuration's entry for the member
// id satisfies ok (nil: the member is absent), or until this member stops
// leading in term or ctx ends. Like apply, it does not wait on raft's
// future.
func (n *Node) awaitConfig(ctx context.Context, term uint64, id string, ok func(*raft.Server) bool) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return err
		}
		var srv *raft.Server
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == id {
				srv = &s
			}
		}
		if ok(srv) {
			return nil
		}
		if cur, err := n.leaderTerm(); err != nil || cur != term {
			return raft.ErrLeadershipLost
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// addLocal, on the leader, adds a member (or updates its address) and
// records its identity.
func (n *Node) addLocal(ctx context.Context, m Member) error {
	if !idRE.MatchString(m.ID) {
		return fmt.Errorf("%w: id %q", ErrBadRequest, m.ID)
	}
	if m.Role != Primary && m.Role != Secondary {
		return fmt.Errorf("%w: role %q", ErrBadRequest, m.Role)
	}
	if _, _, err := net.SplitHostPort(m.RaftAddr); err != nil {
		return fmt.Errorf("%w: raftAddress %q", ErrBadRequest, m.RaftAddr)
	}
	if n.raft.State() != raft.Leader {
		return raft.ErrNotLeader
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	present := false
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == m.ID {
			present = string(s.Address) == m.RaftAddr && (s.Suffrage == raft.Voter) == (m.Role == Primary)
		}
	}
	if !present {
		term, err := n.leaderTerm()
		if err != nil {
			return err
		}
		if m.Role == Primary {
			n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ForwardTimeout)
		} else {
			n.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, n.cfg.ForwardTimeout)
		}
		err = n.awaitConfig(ctx, term, m.ID, func(s *raft.Server) bool {
			return s != nil && string(s.Address) == m.RaftAddr && (s.Suffrage == raft.Voter) == (m.Role == Primary)
		})
		if err != nil {
			return err
		}
	}
	// Recording the identity also commits the configuration change: an
	// entry of this term is applied after it.
	if cur, ok := n.fsm.member(m.ID); !ok || cur != m || !present {
		if _, err := n.apply(ctx, command{Type: cmdMember, Member: &m}); err != nil {
			return err
		}
	}
	return nil
}

// onLeader runs local if this member is the leader, or calls the leader's
// admin handler, retrying while there is no leader or it changes, until
// ctx ends. decode, if set, reads the leader's answer.
func (n *Node) onLeader(ctx context.Context, local func(context.Context) error, method, path string, in any, decode func([]byte) error) error {
	var last error
	for {
		var err error
		_, id := n.raft.LeaderWithID()
		switch {
		case n.raft.State() == raft.Shutdown:
			return raft.ErrRaftShutdown
		case string(id) == n.self.ID:
			err = local(ctx)
		case id == "":
			err = ErrNoLeader
		default:
			m, ok := n.fsm.member(string(id))
			if !ok || m.AdminURL == "" {
				err = fmt.Errorf("%w: the leader %q has not announced its admin URL yet", ErrNoLeader, id)
				break
			}
			var body []byte
			body, err = n.callRaw(ctx, m.AdminURL, method, path, in, true)
			if err == nil && decode != nil {
				err = decode(body)
				if err != nil {
					return fmt.Errorf("decoding the leader's answer: %w", err)
				}
			}
		}
		if err == nil || !retryable(err) {
			return err
		}
		last = err
		if !n.pause(ctx) {
			if ctx.Err() != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return sluice.ErrClosed
		}
	}
}

// pause waits a little before a retry; false if ctx ended or the node
// closed.
func (n *Node) pause(ctx context.Context) bool {
	t := time.NewTimer(25 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-n.ctx.Done():
		return false
	}
}

// bound gives ctx the ForwardTimeout if it has no deadline.
func (n *Node) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.ForwardTimeout)
}

// retryable reports whether an error may go away once a leader is known.
func retryable(err error) bool {
	switch {
	case errors.Is(err, ErrNoLeader), errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrAbortedByRestore):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	}
	var re *remoteError
	if errors.As(err, &re) {
		return re.Code == http.StatusServiceUnavailable || re.Code == http.StatusBadGateway ||
			re.Code == http.StatusGatewayTimeout || re.Code == http.StatusMisdirectedRequest
	}
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// Close stops the member: heartbeats, raft, the transport and the log
// store. The cluster keeps counting it as a member (Leave removes it).
// Watches end. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.wg.Wait()
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
		if err := n.trans.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := n.bolt.Close(); err != nil {
			errs = append(errs, err)
		}
		n.fsm.close()
		n.client.CloseIdleConnections()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newHCLogger routes raft's logs to an slog logger.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       hclog.Info,
		Output:      &slogWriter{l: l},
		DisableTime: true,
	})
}

// slogWriter turns hclog's lines into slog records of the same level.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		level := slog.LevelInfo
		switch {
		case strings.HasPrefix(line, "[ERROR]"):
			level = slog.LevelError
		case strings.HasPrefix(line, "[WARN]"):
			level = slog.LevelWarn
		case strings.HasPrefix(line, "[DEBUG]"), strings.HasPrefix(line, "[TRACE]"):
			level = slog.LevelDebug
		}
		if i := strings.Index(line, "]"); i >= 0 {
			line = strings.TrimSpace(line[i+1:])
		}
		w.l.Log(context.Background(), level, line)
	}
	return len(p), nil
}

var _ sluice.Store = (*Node)(nil)
