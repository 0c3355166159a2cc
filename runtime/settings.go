package runtime

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
)

// settingsWatch says when a peer runs with other consensus settings than
// this member (config.Consensus.Settings: the timing, snapshot and batch
// keys), which its Raft hello tells (transport.Factory.Settings). A
// member restarted with a 5 s election timeout and 1 s heartbeats beside
// members of 300/100 was taken silently: a leadership transfer to it
// was undone by a PreVote 0.3 s later, its heartbeats being slower than
// the others' election timeout, and nothing said why. Running mixed is
// not unsafe (config.Consensus.Settings says why for each key), and a
// rolling change of a key runs mixed for a while, so it is warned of,
// never refused: at WARN once per peer, key and value (each connection
// the peer dials says it again), and in lockstep_raft_peer_settings_differ,
// the number of keys the peer's last hello gave otherwise. A peer whose
// hello gives none (a build before them) says nothing, and nothing is
// said of it.
type settingsWatch struct {
	log   *slog.Logger
	ours  string
	who   func(addr string) string // the peer's name for the log line
	gauge *prometheus.GaugeVec     // nil: none

	mu   sync.Mutex
	said map[string]map[string]string // by peer: key → the value warned of
}

// maxSettingsPeers bounds the peers remembered: a cluster has at most
// config.MaxMembers, and addresses change rarely.
const maxSettingsPeers = 256

func newSettingsWatch(log *slog.Logger, ours string, who func(string) string, gauge *prometheus.GaugeVec) *settingsWatch {
	return &settingsWatch{log: log, ours: ours, who: who, gauge: gauge, said: map[string]map[string]string{}}
}

// heard takes what peer's hello said of its settings.
func (w *settingsWatch) heard(peer, theirs string) {
	diffs := config.DiffSettings(w.ours, theirs)
	w.mu.Lock()
	defer w.mu.Unlock()
	said, known := w.said[peer]
	if !known && len(diffs) == 0 {
		if w.gauge != nil {
			w.gauge.WithLabelValues(peer).Set(0)
		}
		return
	}
	if !known {
		if len(w.said) >= maxSettingsPeers {
			return
		}
		said = map[string]string{}
		w.said[peer] = said
	}
	differ := map[string]bool{}
	for _, d := range diffs {
		differ[d.Key] = true
		if said[d.Key] == d.Theirs {
			continue
		}
		said[d.Key] = d.Theirs
		w.log.Warn("a peer runs with another consensus setting than this member: the consensus keys should be the same on "+
			"every member (all but ride_along_ms); while they differ, leadership may move back and forth (a leader whose "+
			"heartbeats are slower than another member's election timeout loses it to that member) and each leader ticks at "+
			"its own pace; expected for the length of a rolling change, one member at a time, otherwise give every member "+
			"the same value (docs/operations.md, Configuration)",
			"key", d.Key, "ours", d.Ours, "theirs", d.Theirs, "peer", w.who(peer))
	}
	agreed := false
	for k := range said {
		if !differ[k] {
			delete(said, k)
			agreed = true
		}
	}
	if len(said) == 0 {
		delete(w.said, peer)
		if agreed {
			w.log.Info("a peer runs with the same consensus settings as this member again", "peer", w.who(peer))
		}
	}
	if w.gauge != nil {
		w.gauge.WithLabelValues(peer).Set(float64(len(diffs)))
	}
}

// peerName names a peer by its Raft address for a log line: "node-3
// (127.0.0.1:7003)" when the configuration's peers or the membership
// name it, else the address.
func (n *Node) peerName(l *cutOffLog) func(addr string) string {
	return func(addr string) string {
		if _, ok := l.names[addr]; ok {
			return l.who(addr)
		}
		if n.book != nil {
			if id, ok := n.book.At(addr); ok {
				if name, ok := n.knownName(id.Replica); ok {
					return name + " (" + addr + ")"
				}
			}
		}
		return addr
	}
}
