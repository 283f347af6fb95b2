package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/cluster"
)

// TestCluster runs three primaries and one secondary in this process, over
// TCP on loopback with mutual TLS, each with a Gateway using its Node as
// store, and walks through the acceptance criteria in order:
// replication to every gateway within 1 s, member status, a leader killed
// under concurrent load (a new leader within 2 s, a linearizable history,
// survivors serving), the killed member restarted from its data directory
// catching up, a partitioned leader unable to acknowledge writes, and a
// member leaving.
func TestCluster(t *testing.T) {
	ca := newCA(t)
	secret := []byte("a cluster secret of enough bytes")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	ms := []*member{
		newMember(t, ca, secret, "p1", cluster.Primary),
		newMember(t, ca, secret, "p2", cluster.Primary),
		newMember(t, ca, secret, "p3", cluster.Primary),
		newMember(t, ca, secret, "s1", cluster.Secondary),
	}
	defer func() {
		for _, m := range ms {
			m.stop()
		}
	}()
	if err := ms[0].start(ctx, true); err != nil {
		t.Fatal(err)
	}
	// p2 and p3 join through p1; s1 through p2, a follower, which
	// forwards the join to the leader.
	for _, m := range ms[1:3] {
		if err := m.start(ctx, false, ms[0].adminURL); err != nil {
			t.Fatalf("%s: %v", m.id, err)
		}
	}
	if err := ms[3].start(ctx, false, ms[1].adminURL); err != nil {
		t.Fatalf("s1: %v", err)
	}
	live := func() []*member {
		var out []*member
		for _, m := range ms {
			if m.node != nil {
				out = append(out, m)
			}
		}
		return out
	}
	leader := func() *member {
		for _, m := range live() {
			if m.node.IsLeader() {
				return m
			}
		}
		return nil
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()

	// Every object applied on any member reaches every member's gateway
	// within 1 s, and every member's HTTPServer serves it.
	t.Run("replicates", func(t *testing.T) {
		if err := apply(ctx, ms[2].gw, serverYAML, objectYAML("api", "from-p3")); err != nil {
			t.Fatal(err)
		}
		for i, m := range ms {
			body := fmt.Sprintf("from-%s-%d", m.id, i)
			if err := apply(ctx, m.gw, objectYAML("api", body)); err != nil {
				t.Fatalf("apply on %s: %v", m.id, err)
			}
			for _, o := range ms {
				eventually(t, time.Second, fmt.Sprintf("%s's change on %s", m.id, o.id), func() error {
					sp, ok := o.gw.Get("Pipeline", "api")
					if !ok {
						return fmt.Errorf("no pipeline")
					}
					if want := "body: " + body; !strings.Contains(string(sp.YAML()), want) {
						return fmt.Errorf("spec %q", sp.YAML())
					}
					return nil
				})
			}
		}
		for _, m := range ms {
			u, err := m.trafficURL()
			if err != nil {
				t.Fatal(err)
			}
			code, body, err := get(client, u+"/")
			if err != nil || code != 200 || body != "from-s1-3" {
				t.Errorf("%s serves %d %q (%v), want 200 from-s1-3", m.id, code, body, err)
			}
		}

		// Through the gateway's admin API on the secondary: a create and
		// a delete, both forwarded to the leader.
		admin := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ms[3].tlsConfig()}}
		defer admin.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPut, ms[3].adminURL+"/apis/v2/objects", strings.NewReader(objectYAML("extra", "x")))
		req.Header.Set("Content-Type", "application/yaml")
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT /apis/v2/objects on s1: %d", resp.StatusCode)
		}
		for _, o := range ms {
			eventually(t, time.Second, "the admin API's create on "+o.id, func() error {
				if _, ok := o.gw.Get("Pipeline", "extra"); !ok {
					return fmt.Errorf("no pipeline extra")
				}
				return nil
			})
		}
		req, _ = http.NewRequest(http.MethodDelete, ms[3].adminURL+"/apis/v2/objects/extra", nil)
		if resp, err = admin.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE /apis/v2/objects/extra on s1: %d", resp.StatusCode)
		}
		for _, o := range ms {
			eventually(t, time.Second, "the admin API's delete on "+o.id, func() error {
				if _, ok := o.gw.Get("Pipeline", "extra"); ok {
					return fmt.Errorf("pipeline extra still there")
				}
				return nil
			})
		}
	})

	// Every member's status, heartbeats included, on any member.
	t.Run("status", func(t *testing.T) {
		eventually(t, 5*time.Second, "every member alive in the status", func() error {
			var cs cluster.Status
			if err := getJSON(ms[3], "/apis/v2/status/members", &cs); err != nil {
				return err
			}
			if len(cs.Members) != 4 || cs.Leader == "" {
				return fmt.Errorf("status %+v", cs)
			}
			for _, st := range cs.Members {
				wantVoter := st.ID != "s1"
				if !st.Alive || st.Voter != wantVoter || st.State == "" || st.AppliedIndex == 0 || st.Objects == nil || st.AdminURL == "" {
					return fmt.Errorf("member %+v", st)
				}
				if st.ID == "s1" && st.Role != cluster.Secondary {
					return fmt.Errorf("s1 has role %q", st.Role)
				}
			}
			return nil
		})
	})

	// The leader dies in the middle of concurrent writes and linearizable
	// reads on every member.
	var killed *member
	t.Run("failover", func(t *testing.T) {
		h := newHistory()
		stop := make(chan struct{})
		var nodes []*cluster.Node
		for _, m := range live() {
			nodes = append(nodes, m.node)
		}
		var wg sync.WaitGroup
		for c := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.client(ctx, c, nodes, stop)
			}()
		}
		time.Sleep(300 * time.Millisecond)
		killed = leader()
		if killed == nil {
			t.Fatal("no leader")
		}
		killedAt := time.Now()
		h.killed.Store(killed.node)
		killed.stop()
		eventually(t, 2*time.Second-time.Since(killedAt), "a new leader", func() error {
			if leader() == nil {
				return fmt.Errorf("no leader among the survivors")
			}
			return nil
		})
		t.Logf("killed leader %s; new leader after %v", killed.id, time.Since(killedAt).Round(time.Millisecond))
		eventually(t, 5*time.Second, "every survivor following the new leader", func() error {
			l := leader()
			if l == nil {
				return fmt.Errorf("no leader")
			}
			for _, m := range live() {
				if m.node.Leader() != l.id {
					return fmt.Errorf("%s follows %q, not %s", m.id, m.node.Leader(), l.id)
				}
			}
			return nil
		})
		time.Sleep(400 * time.Millisecond)
		close(stop)
		wg.Wait()
		h.finalReads(ctx, live())
		ops := h.operations()
		if h.acked == 0 || h.reads == 0 {
			t.Fatalf("history has %d acknowledged writes and %d reads", h.acked, h.reads)
		}
		res := porcupine.CheckOperationsTimeout(kvModel, ops, 20*time.Second)
		t.Logf("%d operations (%d acknowledged writes, %d failed, %d reads): %s", len(ops), h.acked, h.failed, h.reads, res)
		if res != porcupine.Ok {
			t.Fatalf("the history is not linearizable: %s", res)
		}
		for _, m := range live() {
			u, err := m.trafficURL()
			if err != nil {
				t.Fatal(err)
			}
			if code, body, err := get(client, u+"/"); err != nil || code != 200 || body != "from-s1-3" {
				t.Errorf("survivor %s serves %d %q (%v)", m.id, code, body, err)
			}
		}
	})
	if killed == nil {
		t.FailNow()
	}

	// The killed member restarts from its data directory: it does not
	// bootstrap a second cluster (Bootstrap is ignored with raft state),
	// and catches up with what it missed.
	t.Run("restart", func(t *testing.T) {
		l := leader()
		if err := apply(ctx, l.gw, objectYAML("while-down", "missed")); err != nil {
			t.Fatal(err)
		}
		_, rev, err := l.node.List(cluster.Linearizable(ctx))
		if err != nil {
			t.Fatal(err)
		}
		if err := killed.start(ctx, true); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the restarted member catching up", func() error {
			if _, ok := killed.gw.Get("Pipeline", "while-down"); !ok {
				return fmt.Errorf("no pipeline while-down")
			}
			if st := killed.gw.Status(); st.Revision < rev {
				return fmt.Errorf("gateway at revision %d, want %d", st.Revision, rev)
			}
			if l := leader(); l == nil || killed.node.Leader() != l.id {
				return fmt.Errorf("the restarted member follows %q", killed.node.Leader())
			}
			return nil
		})
		members, err := killed.node.Members()
		if err != nil || len(members) != 4 {
			t.Fatalf("the restarted member sees %d members (%v), want 4", len(members), err)
		}
		u, err := killed.trafficURL()
		if err != nil {
			t.Fatal(err)
		}
		if code, body, err := get(client, u+"/"); err != nil || code != 200 || body != "from-s1-3" {
			t.Errorf("restarted %s serves %d %q (%v)", killed.id, code, body, err)
		}
	})

	// A leader cut off from the others cannot acknowledge a write; the
	// majority elects another and goes on; healed, the old leader
	// catches up and its unacknowledged write is gone.
	t.Run("partition", func(t *testing.T) {
		var old *member
		eventually(t, 5*time.Second, "a leader", func() error {
			if old = leader(); old == nil {
				return fmt.Errorf("none")
			}
			return nil
		})
		old.net.Cut()
		wctx, wcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		_, err := old.node.Commit(wctx, sluice.Op{Kind: registerKind, Name: "partitioned", Spec: []byte("lost")})
		wcancel()
		if err == nil {
			t.Fatal("a partitioned leader acknowledged a write")
		}
		var others []*member
		for _, m := range live() {
			if m != old {
				others = append(others, m)
			}
		}
		if _, err := others[0].node.Commit(ctx, sluice.Op{Kind: registerKind, Name: "majority", Spec: []byte("kept")}); err != nil {
			t.Fatalf("the majority cannot commit: %v", err)
		}
		old.net.Heal()
		eventually(t, 10*time.Second, "the healed member catching up", func() error {
			recs, _, err := old.node.List(cluster.Linearizable(ctx))
			if err != nil {
				return err
			}
			got := map[string]string{}
			for _, r := range recs {
				got[r.Name] = string(r.Spec)
			}
			if got["majority"] != "kept" || got["partitioned"] != "" {
				return fmt.Errorf("records %v", got)
			}
			return nil
		})

		// A follower cut off cannot reach the leader to forward a write.
		var follower *member
		for _, m := range live() {
			if !m.node.IsLeader() {
				follower = m
				break
			}
		}
		follower.net.Cut()
		wctx, wcancel = context.WithTimeout(ctx, time.Second)
		_, err = follower.node.Commit(wctx, sluice.Op{Kind: registerKind, Name: "cut-follower", Spec: []byte("lost")})
		wcancel()
		follower.net.Heal()
		if err == nil {
			t.Fatal("a partitioned follower acknowledged a write")
		}
		recs, _, err := follower.node.List(cluster.Linearizable(ctx))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Name == "cut-follower" {
				t.Error("the write of a partitioned follower was committed")
			}
		}
	})

	// The secondary leaves; the others stop counting it.
	t.Run("leave", func(t *testing.T) {
		s1 := ms[3]
		if err := s1.node.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		s1.stop()
		eventually(t, 5*time.Second, "three members left", func() error {
			for _, m := range live() {
				members, err := m.node.Members()
				if err != nil {
					return err
				}
				if len(members) != 3 {
					return fmt.Errorf("%s lists %d members", m.id, len(members))
				}
			}
			return nil
		})
	})
}

// getJSON GETs path from m's admin server with its client certificate.
func getJSON(m *member, path string, out any) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: m.tlsConfig()}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(m.adminURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// kvInput is one operation on the replicated registers.
type kvInput struct {
	put   bool
	key   string
	value string
}

// kvModel: each key is a register, "" until written.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
}

const registerKind = "sluice:TestRegister" // a kind gateways leave alone

// history records the operations of concurrent clients.
type history struct {
	start  time.Time
	mu     sync.Mutex
	ops    []porcupine.Operation
	acked  int
	failed int
	reads  int
	killed atomic.Pointer[cluster.Node]
	seq    int
}

func newHistory() *history { return &history{start: time.Now()} }

func (h *history) now() int64 { return int64(time.Since(h.start)) }

// client writes unique values and reads linearizably, on random members,
// until stop is closed. A write that fails may have taken effect, so it is
// recorded as never returning; a read that fails is left out.
func (h *history) client(ctx context.Context, id int, nodes []*cluster.Node, stop <-chan struct{}) {
	keys := []string{"a", "b", "c"}
	for {
		select {
		case <-stop:
			return
		default:
		}
		node := nodes[rand.IntN(len(nodes))]
		if node == h.killed.Load() {
			continue
		}
		h.mu.Lock()
		h.seq++
		seq := h.seq
		h.mu.Unlock()
		key := keys[rand.IntN(len(keys))]
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if rand.IntN(2) == 0 {
			value := fmt.Sprintf("%d-%d", id, seq)
			call := h.now()
			_, err := node.Commit(octx, sluice.Op{Kind: registerKind, Name: key, Spec: []byte(value)})
			ret := h.now()
			h.mu.Lock()
			if err != nil {
				ret = math.MaxInt64
				h.failed++
			} else {
				h.acked++
			}
			h.ops = append(h.ops, porcupine.Operation{ClientId: id, Input: kvInput{put: true, key: key, value: value}, Call: call, Return: ret})
			h.mu.Unlock()
		} else {
			call := h.now()
			v, err := readKey(octx, node, key)
			ret := h.now()
			if err == nil {
				h.mu.Lock()
				h.reads++
				h.ops = append(h.ops, porcupine.Operation{ClientId: id, Input: kvInput{key: key}, Output: v, Call: call, Return: ret})
				h.mu.Unlock()
			}
		}
		cancel()
	}
}

// finalReads reads every key once more on every live member, after all
// writes returned: an acknowledged write lost would show here.
func (h *history) finalReads(ctx context.Context, ms []*member) {
	for _, m := range ms {
		for _, key := range []string{"a", "b", "c"} {
			call := h.now()
			v, err := readKey(ctx, m.node, key)
			if err != nil {
				continue
			}
			h.mu.Lock()
			h.reads++
			h.ops = append(h.ops, porcupine.Operation{ClientId: 99, Input: kvInput{key: key}, Output: v, Call: call, Return: h.now()})
			h.mu.Unlock()
		}
	}
}

func (h *history) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

func readKey(ctx context.Context, n *cluster.Node, key string) (string, error) {
	recs, _, err := n.List(cluster.Linearizable(ctx))
	if err != nil {
		return "", err
	}
	for _, r := range recs {
		if r.Kind == registerKind && r.Name == key {
			return string(r.Spec), nil
		}
	}
	return "", nil
}

// TestKVModelCatchesLostWrite keeps the linearizability check honest: a
// history in which an acknowledged write is not seen by a later read is
// rejected.
func TestKVModelCatchesLostWrite(t *testing.T) {
	ops := []porcupine.Operation{
		{ClientId: 0, Input: kvInput{put: true, key: "a", value: "1"}, Call: 0, Return: 10},
		{ClientId: 1, Input: kvInput{key: "a"}, Output: "", Call: 20, Return: 30},
	}
	if res := porcupine.CheckOperationsTimeout(kvModel, ops, 10*time.Second); res != porcupine.Illegal {
		t.Errorf("a lost write checks %s, want Illegal", res)
	}
	ops[1].Output = "1"
	if res := porcupine.CheckOperationsTimeout(kvModel, ops, 10*time.Second); res != porcupine.Ok {
		t.Errorf("a kept write checks %s, want Ok", res)
	}
}
