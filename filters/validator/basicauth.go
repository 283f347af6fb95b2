package validator

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sluicegw/sluice/pipeline"
)

// DefaultReloadInterval is the default of BasicAuthSpec.ReloadInterval.
const DefaultReloadInterval = 10 * time.Second

// UserHeader carries the name of a user that basic auth let in.
const UserHeader = "X-Auth-User"

// BasicAuthSpec configures HTTP basic authentication against an htpasswd
// file, as Easegress's mode FILE.
//
//	basicAuth:
//	  mode: FILE
//	  userFile: /etc/sluice/htpasswd
//
// The file has one "user:hash" line per user, where hash is a bcrypt hash
// ($2a$, $2b$ or $2y$, as "htpasswd -B" writes); blank lines and lines
// starting with # are skipped. Other hash types are refused.
type BasicAuthSpec struct {
	// Mode is where users come from: FILE, the only mode (and the
	// default).
	Mode string `yaml:"mode,omitempty"`
	// UserFile is the htpasswd file. Required.
	UserFile string `yaml:"userFile"`
	// ReloadInterval is the least time between two looks at the file's
	// modification time and size; the file is read again when either
	// changed. A file that no longer parses is logged and the users read
	// before are kept. Default 10s.
	ReloadInterval time.Duration `yaml:"reloadInterval,omitempty"`
}

func (s *BasicAuthSpec) validate() error {
	if s.Mode != "" && s.Mode != "FILE" {
		return pipeline.FieldErr("mode", fmt.Errorf("unsupported mode %q; use FILE", s.Mode))
	}
	if s.UserFile == "" {
		return pipeline.FieldErr("userFile", errors.New("required"))
	}
	if s.ReloadInterval < 0 {
		return pipeline.FieldErr("reloadInterval", fmt.Errorf("must not be negative, got %v", s.ReloadInterval))
	}
	return nil
}

// basicAuth checks user names and passwords against an htpasswd file.
type basicAuth struct {
	file     string
	interval time.Duration
	clock    pipeline.Clock
	logger   *slog.Logger

	users atomic.Pointer[userFile]

	mu        sync.Mutex // one goroutine looks at the file at a time
	lastCheck atomic.Int64
}

// userFile is one reading of the file.
type userFile struct {
	hashes  map[string][]byte
	modTime time.Time
	size    int64
}

func newBasicAuth(s *BasicAuthSpec, env pipeline.Env) (*basicAuth, error) {
	b := &basicAuth{file: s.UserFile, interval: orDefault(s.ReloadInterval, DefaultReloadInterval), clock: env.Clock, logger: env.Logger}
	uf, err := readUserFile(s.UserFile)
	if err != nil {
		return nil, pipeline.FieldErr("userFile", err)
	}
	b.users.Store(uf)
	b.lastCheck.Store(env.Clock.Now().UnixNano())
	return b, nil
}

func readUserFile(path string) (*userFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	uf := &userFile{hashes: map[string][]byte{}, modTime: st.ModTime(), size: st.Size()}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: not user:hash", n) // never the line: it holds a hash
		}
		if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$") {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash", n, user)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: malformed bcrypt hash", n, user)
		}
		if _, dup := uf.hashes[user]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", n, user)
		}
		uf.hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return uf, nil
}

// reload looks at the file when the last look is older than the interval
// and reads it again if it changed.
func (b *basicAuth) reload() {
	now := b.clock.Now().UnixNano()
	if now-b.lastCheck.Load() < int64(b.interval) || !b.mu.TryLock() {
		return
	}
	defer b.mu.Unlock()
	if now-b.lastCheck.Load() < int64(b.interval) {
		return
	}
	b.lastCheck.Store(now)
	cur := b.users.Load()
	st, err := os.Stat(b.file)
	if err != nil {
		b.logger.Warn("basic auth user file unreadable; keeping its last reading", "file", b.file, "error", err)
		return
	}
	if st.ModTime().Equal(cur.modTime) && st.Size() == cur.size {
		return
	}
	uf, err := readUserFile(b.file)
	if err != nil {
		b.logger.Warn("basic auth user file does not parse; keeping its last reading", "file", b.file, "error", err)
		return
	}
	b.users.Store(uf)
	b.logger.Info("basic auth user file reloaded", "file", b.file, "users", len(uf.hashes))
}

func (b *basicAuth) verify(r *http.Request) *failure {
	b.reload()
	user, pass, ok := r.BasicAuth()
	delete(r.Header, UserHeader)
	if !ok {
		return unauthorized("missing credentials")
	}
	if len(pass) > 72 || len(user) > 256 {
		return unauthorized("bad credentials") // bcrypt takes at most 72 bytes
	}
	hash, known := b.users.Load().hashes[user]
	if !known || bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return unauthorized("bad credentials")
	}
	r.Header[UserHeader] = []string{user}
	return nil
}
