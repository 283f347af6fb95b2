package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"time"
)

// Role is what a member does in the cluster.
type Role string

const (
	// Primary members are raft voters: a majority of them must agree on
	// every change. Run an odd number, three or five.
	Primary Role = "primary"
	// Secondary members are raft non-voters: they replicate every change
	// and serve traffic, but take no part in elections or commits, so
	// adding them costs the primaries no latency and no availability.
	Secondary Role = "secondary"
)

// Defaults tuned for fast failover on a LAN; see the package comment for
// the trade-offs.
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	DefaultHeartbeatInterval  = time.Second
	DefaultSnapshotThreshold  = 1024
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 2048
	DefaultForwardTimeout     = 10 * time.Second
)

// Config describes one member. The zero value of every duration and count
// means its default.
type Config struct {
	// ID names the member in raft; it never changes for a data directory.
	// Letters, digits, '.', '_' and '-'. Required.
	ID string
	// Name is shown in member lists. Default: ID.
	Name string
	// Role: Primary (a voter) or Secondary (a non-voter). Default: Primary.
	Role Role
	// DataDir holds the raft log and stable store (raft.db, bbolt) and the
	// snapshots. A member restarted with its data directory rejoins its
	// cluster; it never bootstraps a second one. Required.
	DataDir string

	// RaftAddr is the address the raft transport listens on, e.g.
	// "0.0.0.0:2380". Ignored when Listener is set.
	RaftAddr string
	// Listener, if set, is used for the raft transport instead of
	// listening on RaftAddr. The node closes it.
	Listener net.Listener
	// AdvertiseAddr is the raft address the other members dial (host:port,
	// a host their certificates name). Default: the listener's address.
	AdvertiseAddr string
	// AdminURL is where the other members reach this member's
	// AdminHandler, e.g. "https://10.0.0.1:2381". Required.
	AdminURL string

	// Bootstrap starts a new cluster with this member as its only voter,
	// if the data directory holds no raft state yet. Needs Role Primary.
	Bootstrap bool
	// Join lists admin URLs of members to join through when the data
	// directory holds no raft state yet; any member will do, a follower
	// forwards to the leader. Exactly one of Bootstrap and Join is needed
	// for a new data directory; both are ignored for an existing one.
	Join []string

	// TLS holds this member's certificate (Certificates or GetCertificate)
	// and the pool that signs the other members' certificates (RootCAs;
	// ClientCAs defaults to RootCAs). The raft transport requires and
	// verifies certificates both ways (TLS 1.3); the same configuration
	// is the client side of the calls to the other members' admin
	// handlers. Required.
	TLS *tls.Config
	// Secret is shared by every member, at least 16 bytes. A raft
	// connection proves it with an HMAC over the TLS session's exported
	// keying material; a call between admin handlers (join, leave,
	// forwarded writes, heartbeats) carries an HMAC over the request.
	// Required.
	Secret []byte

	// Dial, if set, opens the connections to the other members (raft and
	// admin calls). Default: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives the node's and raft's logs. Default: discard.
	Logger *slog.Logger

	// HeartbeatTimeout: a follower that hears nothing from the leader for
	// this long (randomised up to twice) starts an election. Default
	// DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: a candidate that wins no election in this long
	// (randomised up to twice) tries again. Default DefaultElectionTimeout.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: a leader that cannot reach a majority for this
	// long steps down, so a partitioned leader stops acknowledging soon.
	// At most HeartbeatTimeout. Default DefaultLeaderLeaseTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: how long the leader waits before sending an empty
	// append to spread the commit index. Default DefaultCommitTimeout.
	CommitTimeout time.Duration
	// HeartbeatInterval: how often each member reports its status to the
	// leader; a member silent for three intervals shows as not alive.
	// Default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// SnapshotThreshold: log entries since the last snapshot that make the
	// next one. Default DefaultSnapshotThreshold.
	SnapshotThreshold uint64
	// SnapshotInterval: how often the threshold is checked. Default
	// DefaultSnapshotInterval.
	SnapshotInterval time.Duration
	// TrailingLogs: log entries kept after a snapshot, so that a briefly
	// absent member catches up from the log instead of a snapshot.
	// Default DefaultTrailingLogs.
	TrailingLogs uint64
	// ForwardTimeout bounds a write or read forwarded to the leader when
	// its context has no deadline. Default DefaultForwardTimeout.
	ForwardTimeout time.Duration
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// withDefaults validates c and fills in its defaults. Errors name the
// field.
func (c Config) withDefaults() (Config, error) {
	bad := func(field, format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s: %s", ErrBadConfig, field, fmt.Sprintf(format, args...))
	}
	if !idRE.MatchString(c.ID) {
		return bad("ID", "%q: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", c.ID)
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	switch c.Role {
	case "":
		c.Role = Primary
	case Primary, Secondary:
	default:
		return bad("Role", "%q: want primary or secondary", c.Role)
	}
	if c.DataDir == "" {
		return bad("DataDir", "required")
	}
	if c.Listener == nil && c.RaftAddr == "" {
		return bad("RaftAddr", "required unless Listener is set")
	}
	if u, err := url.Parse(c.AdminURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("AdminURL", "%q: want an http or https URL", c.AdminURL)
	}
	if c.Bootstrap && c.Role != Primary {
		return bad("Bootstrap", "only a primary member can bootstrap a cluster")
	}
	for i, j := range c.Join {
		if u, err := url.Parse(j); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(fmt.Sprintf("Join[%d]", i), "%q: want an http or https URL", j)
		}
	}
	if c.TLS == nil {
		return bad("TLS", "required: members authenticate each other with certificates")
	}
	if len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		return bad("TLS.Certificates", "this member's certificate is required")
	}
	if c.TLS.RootCAs == nil {
		return bad("TLS.RootCAs", "the pool that signs the members' certificates is required")
	}
	if len(c.Secret) < 16 {
		return bad("Secret", "at least 16 bytes are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	def := func(p *time.Duration, d time.Duration, field string) error {
		if *p < 0 {
			return fmt.Errorf("%w: %s: negative", ErrBadConfig, field)
		}
		if *p == 0 {
			*p = d
		}
		return nil
	}
	for _, d := range []struct {
		p     *time.Duration
		d     time.Duration
		field string
	}{
		{&c.HeartbeatTimeout, DefaultHeartbeatTimeout, "HeartbeatTimeout"},
		{&c.ElectionTimeout, DefaultElectionTimeout, "ElectionTimeout"},
		{&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout, "LeaderLeaseTimeout"},
		{&c.CommitTimeout, DefaultCommitTimeout, "CommitTimeout"},
		{&c.HeartbeatInterval, DefaultHeartbeatInterval, "HeartbeatInterval"},
		{&c.SnapshotInterval, DefaultSnapshotInterval, "SnapshotInterval"},
		{&c.ForwardTimeout, DefaultForwardTimeout, "ForwardTimeout"},
	} {
		if err := def(d.p, d.d, d.field); err != nil {
			return c, err
		}
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return bad("LeaderLeaseTimeout", "%v is longer than HeartbeatTimeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		return bad("ElectionTimeout", "%v is shorter than HeartbeatTimeout %v", c.ElectionTimeout, c.HeartbeatTimeout)
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	return c, nil
}

// Errors.
var (
	// ErrBadConfig: a Config field is missing or wrong; the message names it.
	ErrBadConfig = errors.New("cluster: bad config")
	// ErrBadRequest: a request to the cluster is malformed (an op without
	// kind or name, an undecodable body).
	ErrBadRequest = errors.New("cluster: bad request")
	// ErrNoLeader: no leader is known or reachable right now; a write or a
	// linearizable read is retried until its context ends.
	ErrNoLeader = errors.New("cluster: no leader")
	// ErrUnauthorized: a call between members lacks a valid certificate or
	// cluster secret.
	ErrUnauthorized = errors.New("cluster: unauthorized")
	// ErrRemoved: the leader does not count this member in the cluster.
	ErrRemoved = errors.New("cluster: not a member")
)
