package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc"
	"github.com/lockstepd/lockstep/runtime"
)

// serve runs `lockstep serve`: it reads the configuration, binds the API and
// metrics addresses, starts the runtime and the API on it, and runs until a
// signal. The first SIGTERM or SIGINT drains; a second one exits at once.
func serve(args []string, stdout, stderr io.Writer) int {
	f := newServeFlags(stderr)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lockstep serve: unexpected arguments %q: flags only (see lockstep serve -h)\n", f.fs.Args())
		return exitUsage
	}
	cfg, err := loadConfig(f)
	if err != nil {
		fmt.Fprintf(stderr, "lockstep serve: %v\n", err)
		return exitUsage
	}
	f.level = new(slog.LevelVar)
	base, err := newLogger(stderr, cfg.Log, f.level)
	if err != nil {
		fmt.Fprintf(stderr, "lockstep serve: %v\n", err)
		return exitUsage
	}
	if f.check {
		if len(f.unread) > 0 {
			// --check often runs as another user than the service: that
			// this one may not use the directory is neither an error nor
			// an ok (the first says it, the others are of the same cause).
			fmt.Fprintf(stderr, "lockstep serve: warning: the data directory is not checked: this user may not use it "+
				"(a start as this user would fail; one as the service's user may not): %v; run lockstep serve --check as the service's user to check it\n", f.unread[0])
		}
		for _, w := range startWarnings(cfg, f) {
			fmt.Fprintf(stderr, "lockstep serve: warning: %s\n", w)
		}
		if err := cfg.Security.CheckAuditPath(); errors.Is(err, fs.ErrPermission) {
			fmt.Fprintf(stderr, "lockstep serve: warning: the audit log's directory is not checked: %v\n", err)
		} else if err != nil {
			// A start does not refuse it (the member waits for the
			// directory, refusing every request); a check says so.
			fmt.Fprintf(stderr, "lockstep serve: configuration: %v\n", err)
			return exitUsage
		}
		members := countOf(max(len(cfg.Cluster.Peers), 1), "member")
		switch {
		case runtime.HasRun(cfg.Cluster.DataDir):
			// What the directory holds decides, not the file: a restart
			// reads neither peers (perhaps stale) nor join. It said
			// "joining a running cluster" of a member that had run.
			members = "a restart on its data directory (its members are there; peers and join are not read)"
		case cfg.Cluster.Join:
			members = "joining a running cluster (peers are not read)"
		case len(cfg.Cluster.Peers) == 0:
			members = "a restart on its data directory (its members are there; peers and join are not read)"
		}
		ok := "configuration ok"
		if len(f.unread) > 0 {
			ok = "configuration ok but for the data directory, which this user could not check"
		}
		fmt.Fprintf(stdout, "%s: node %s, %s, %s\n", ok, cfg.Cluster.NodeID, members, countOf(cfg.Consensus.Shards, "shard"))
		return exitOK
	}
	return runNode(cfg, f, base, stdout)
}

// loadConfig reads the file or the dev defaults, then the flags.
func loadConfig(f *serveFlags) (config.Config, error) {
	var cfg config.Config
	switch {
	case f.dev && f.configFile != "":
		return cfg, errors.New("--dev and --config exclude each other: --dev runs one node with the defaults")
	case f.dev:
		cfg = config.Dev("")
	case f.configFile != "":
		// Read, not Load: the flags (--insecure among them) apply before
		// the values are checked.
		var err error
		if cfg, err = config.Read(f.configFile); err != nil {
			return cfg, err
		}
	default:
		return cfg, errors.New("give --config FILE (a member of a cluster, see config/*.yaml) or --dev (one node to try it out)")
	}
	if err := f.applyOverrides(&cfg); err != nil {
		return cfg, err
	}
	f.readAtStart = cfg
	if f.dev && !f.given("peers") {
		// One node: its own peer, under whatever id and address the flags gave.
		cfg.Cluster.Peers = map[string]string{cfg.Cluster.NodeID: cfg.Cluster.RaftAddress}
	}
	madeDir := ""
	if f.dev && cfg.Cluster.DataDir == "" && f.check {
		// A run would make a fresh temporary directory; checking makes none,
		// so it validates against the name such a directory would have.
		cfg.Cluster.DataDir = filepath.Join(os.TempDir(), "lockstep-dev-check")
	}
	if f.dev && cfg.Cluster.DataDir == "" && !f.check {
		dir, err := os.MkdirTemp("", "lockstep-dev-")
		if err != nil {
			return cfg, fmt.Errorf("--dev: making a data directory: %w", err)
		}
		cfg.Cluster.DataDir, madeDir = dir, dir
		f.madeDir = dir
	}
	if cfg.Cluster.DataDir != "" {
		// Relative to the working directory (docs/operations.md): every
		// line that names it names where it really is.
		if abs, err := filepath.Abs(cfg.Cluster.DataDir); err == nil {
			cfg.Cluster.DataDir = abs
		}
	}
	if entries, err := os.ReadDir(cfg.Cluster.DataDir); err == nil && len(entries) > 0 {
		f.dataKept = true
	}
	if err := cfg.Validate(); err != nil {
		if madeDir != "" {
			os.Remove(madeDir)
		}
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	// A missing, mismatched, expired or foreign certificate, a client's
	// certificate or one that does not name the raft_address host, or a
	// keys file that does not parse, stops the node here, before anything
	// listens.
	mat, err := cfg.LoadMaterial(time.Now())
	if err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	f.material = mat
	// The data directory, as Start checks it (runtime.CheckDataDir): a
	// start refuses another shard count than the one it was made with,
	// another incarnation than the one it runs as (under which it would
	// bootstrap a new, empty replica beside its own state), another
	// member's directory (another raft_address, another host) and a
	// damaged record, as configuration errors (exit 2), before anything
	// listens. One this user may not read and write is for the start to
	// report (--check, which often runs as another user than the service,
	// says it could not check it).
	// A restart that gives no incarnation runs as the one recorded.
	cfg, _, err = runtime.WithRecordedIncarnation(cfg)
	if err != nil && !errors.Is(err, fs.ErrPermission) {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	dataErr := runtime.CheckDataDir(cfg)
	// And a first start needs its peers (or --join); a restart needs
	// neither, its members being in the data directory.
	peersErr := runtime.CheckPeers(cfg.Cluster)
	for _, err := range []error{dataErr, peersErr} {
		switch {
		case errors.Is(err, fs.ErrPermission):
			f.unread = append(f.unread, err)
		case err != nil:
			return cfg, fmt.Errorf("configuration: %w", err)
		}
	}
	return cfg, nil
}

// countOf is n and noun, plural unless n is 1.
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// newLogger writes c's format at the level in level, which it sets to c's:
// a reload moves it (hangup).
func newLogger(w io.Writer, c config.Log, level *slog.LevelVar) (*slog.Logger, error) {
	lv, err := c.SlogLevel()
	if err != nil {
		return nil, err
	}
	level.Set(lv)
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format: %q is not a format: use text or json", c.Format)
}

// dropMadeDir removes the data directory --dev made for this run, when the
// node stops before Raft wrote anything to it.
func (f *serveFlags) dropMadeDir() {
	if f.madeDir != "" {
		os.Remove(f.madeDir) // only if empty
	}
}

// addressName names an address the way the user gave it: the flag with
// --dev or when the flag was given, else the configuration key.
func (f *serveFlags) addressName(flagName, key string) string {
	if f.dev || f.given(flagName) {
		return "--" + flagName
	}
	return key
}

// pprofWarning is said at start (and by --check) when --pprof serves
// profiles on the metrics address, which asks for no credentials, beside
// an API that asks for them.
const pprofWarning = "--pprof serves /debug/pprof/ on the metrics address without authentication, though the API requires it: " +
	"anyone who reaches that address can read every goroutine's stack, the command line and profiles; " +
	"keep it on a network only operators reach, or run without --pprof (docs/security.md, What is not protected)"

// startWarnings are what a start and serve --check warn of: the security
// settings' (a reload says those again) and --pprof's beside
// authentication.
func startWarnings(cfg config.Config, f *serveFlags) []string {
	ws := cfg.Security.Warnings()
	sec := cfg.Security
	authOn := sec.APIKeysFile != "" || sec.TLS != nil && sec.TLS.ClientAuth != "" && sec.TLS.ClientAuth != config.ClientAuthNone
	if f.pprof && authOn {
		ws = append(ws, pprofWarning)
	}
	return ws
}

// runNode wires the runtime, the API and the metrics endpoint together and
// runs them until a signal.
func runNode(cfg config.Config, f *serveFlags, base *slog.Logger, stdout io.Writer) int {
	log := base.With("node", cfg.Cluster.NodeID)
	for _, d := range cfg.Deprecations() {
		log.Warn(d)
	}
	for _, w := range startWarnings(cfg, f) {
		log.Warn(w)
	}
	if !f.dataKept && !f.dev && !cfg.Cluster.Join && len(cfg.Cluster.Peers) > 1 {
		// Right for a new cluster's first start; wrong for a member that
		// ran before and is now pointed elsewhere (a relative data_dir and
		// another working directory, a wiped disk): it would rejoin with
		// no log and no memory of its votes.
		// WARN, once per member of a new cluster: nothing else stops a
		// member that lost its disk from rejoining this way (the guide,
		// "Backup by snapshot").
		log.Warn("an empty data directory: this member starts as a new initial member of the peers listed; "+
			"if it ran before, stop it and start it on its own data directory, or replace it (remove, then add it back: docs/operations.md)",
			"data_dir", cfg.Cluster.DataDir)
	}
	// Bind first: a port in use fails here, naming its key, before Raft
	// starts and touches the data directory.
	apiLn, err := net.Listen("tcp", cfg.Cluster.APIAddress)
	if err != nil {
		f.dropMadeDir()
		log.Error("cannot listen on "+f.addressName("api-address", "cluster.api_address"), "address", cfg.Cluster.APIAddress, "err", err)
		return exitError
	}
	var metricsLn net.Listener
	if cfg.Cluster.MetricsAddress != "" {
		if metricsLn, err = net.Listen("tcp", cfg.Cluster.MetricsAddress); err != nil {
			apiLn.Close()
			f.dropMadeDir()
			log.Error("cannot listen on "+f.addressName("metrics-address", "cluster.metrics_address"), "address", cfg.Cluster.MetricsAddress, "err", err)
			return exitError
		}
	}

	// The Raft port too, though Dragonboat binds it itself: it does so
	// after it has claimed the data directory for this address, which a
	// start on the right address would then find taken by a member that
	// never ran. A probe's race with another process is left to Dragonboat.
	raftListen := cfg.Cluster.RaftListenAddress
	if raftListen == "" {
		raftListen = cfg.Cluster.RaftAddress
	}
	closeListeners := func() {
		apiLn.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
	}
	if probe, err := net.Listen("tcp", raftListen); err != nil {
		closeListeners()
		f.dropMadeDir()
		key := "cluster.raft_address"
		if cfg.Cluster.RaftListenAddress != "" {
			key = "cluster.raft_listen_address"
		}
		log.Error("cannot listen on "+f.addressName("raft-address", key), "address", raftListen, "err", err)
		return exitError
	} else {
		probe.Close()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Security before the node: Raft takes its certificate and CA from
	// the state, so that a reload (SIGHUP) reaches the Raft port too.
	sec, audit, err := startSecurity(cfg, f.material, reg, log)
	if err != nil {
		closeListeners()
		f.dropMadeDir()
		log.Error("security did not start", "err", err)
		return exitError
	}
	nodeOpts := runtime.Options{Config: cfg, Logger: base, Registerer: reg, Clock: nodeClock(), Monotonic: nodeMonotonic()}
	if cfg.Security.TLS != nil {
		nodeOpts.RaftCredentials = sec.Credentials
	}
	node, err := runtime.Start(context.Background(), nodeOptions(nodeOpts))
	if err != nil {
		closeListeners()
		if audit != nil {
			_ = audit.Close() // it holds nothing yet
		}
		log.Error("the node did not start", "err", err)
		return exitError
	}
	maxWait := time.Duration(cfg.Locks.MaxWaitTimeSeconds) * time.Second
	if maxWait == 0 {
		maxWait = rpc.NoWait
	}
	// Done once the node answered what was proposed at a drain: the
	// session streams end, and their clients move to another member.
	draining, startDraining := context.WithCancel(context.Background())
	defer startDraining()
	opts := rpc.Options{
		Draining:   draining,
		Backend:    node,
		NodeID:     cfg.Cluster.NodeID,
		DefaultTTL: time.Duration(cfg.Locks.DefaultTTLSeconds) * time.Second,
		MaxWait:    maxWait,
		StampLag:   2 * time.Duration(cfg.Consensus.TickIntervalMs) * time.Millisecond,
		Logger:     log,
		Registerer: reg,
	}
	if sec.AuthOn() {
		// Without authentication there is no principal and no ACL (the
		// configuration refuses an ACL then): the defaults cost nothing.
		opts.Authenticator, opts.Authorizer = sec, sec
		opts.MaxStreamsPerPrincipal = cfg.Security.StreamsPerPrincipal()
	}
	if audit != nil {
		opts.Auditor = audit
	}
	api, err := rpc.New(opts)
	if err != nil {
		node.Close()
		closeListeners()
		if audit != nil {
			_ = audit.Close()
		}
		log.Error("the API did not start", "err", err)
		return exitError
	}

	tlsOn := cfg.Security.TLS != nil
	apiSrv := rpc.NewHTTPServer(cfg.Cluster.APIAddress, api, log)
	serveErr := make(chan error, 2)
	if tlsOn {
		rpc.UseTLS(apiSrv, sec.APITLS())
		// No BufferedListener: tls.Conn already reads whole records.
		go func() { serveErr <- fmt.Errorf("API server: %w", apiSrv.ServeTLS(apiLn, "", "")) }()
	} else {
		go func() { serveErr <- fmt.Errorf("API server: %w", apiSrv.Serve(rpc.BufferedListener(apiLn))) }()
	}
	var metricsSrv *http.Server
	if metricsLn != nil {
		metricsSrv = newMetricsServer(reg, log, f.pprof, node)
		if tlsOn {
			metricsSrv.TLSConfig = sec.MetricsTLS()
			go func() { serveErr <- fmt.Errorf("metrics server: %w", metricsSrv.ServeTLS(metricsLn, "", "")) }()
		} else {
			go func() { serveErr <- fmt.Errorf("metrics server: %w", metricsSrv.Serve(metricsLn)) }()
		}
	}
	stopReload := make(chan struct{})
	members := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := node.Status(ctx)
		if err != nil {
			return len(cfg.Cluster.Peers)
		}
		return len(st.Members)
	}
	go reloadOnHangup(f, cfg, sec, audit, members, log, stopReload)
	log.Info("serving", "tls", tlsOn, "authentication", sec.AuthOn(), "api_address", cfg.Cluster.APIAddress, "metrics_address", cfg.Cluster.MetricsAddress,
		"raft_address", cfg.Cluster.RaftAddress, "data_dir", cfg.Cluster.DataDir, "version", rpc.Version(), "versions", node.Versions())
	if f.dev {
		printDevBanner(stdout, cfg, f)
	}
	stopLeadership := make(chan struct{})
	go logLeadership(node, log, stopLeadership, 250*time.Millisecond, leaderlessGrace)

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	code := exitOK
	select {
	case sig := <-signals:
		log.Info("draining: no new connections, in-flight requests finish, queued waits move to another member (a second signal exits at once)",
			"signal", sig.String(), "drain_timeout", f.drainTimeout)
	case err := <-serveErr:
		log.Error("stopping", "err", err)
		code = exitError
	case <-node.Fatal():
		// The node said why at ERROR, with what to do (its data
		// directory is gone). Exit now, without the drain, whose Close
		// would write into the directory: Pebble's panic at its next
		// file there would come first, with a goroutine dump. What was
		// acknowledged is on the other members, as after a kill -9.
		return exitError
	}
	go func() {
		sig := <-signals
		log.Warn("second signal: exiting now", "signal", sig.String())
		os.Exit(exitError)
	}()
	close(stopLeadership)
	close(stopReload)
	if err := shutdown(apiSrv, metricsSrv, node, startDraining, f.drainTimeout, log); err != nil {
		log.Error("shutdown", "err", err)
		code = exitError
	}
	if audit != nil {
		// After the API drained: every answer's line is written. A
		// request still running past the drain timeout is answered
		// unavailable (its line cannot be written any more).
		if err := audit.Close(); err != nil {
			log.Error("closing the audit log", "err", err)
			code = exitError
		}
	}
	log.Info("stopped")
	return code
}

// shutdown drains: the API stops accepting connections while in-flight
// requests finish; closing the node answers what was proposed, answers
// queued waits 503 (their callers retry elsewhere: a wait with its
// client's client_id and request_seq stays queued for that retry, any
// other is withdrawn) and hands leadership away; then the session streams, which would otherwise last
// as long as their clients' sessions, end (drain), so that their clients
// move to another member; connections still open after drainTimeout are
// closed.
func shutdown(apiSrv, metricsSrv *http.Server, node *runtime.Node, drain func(), drainTimeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- apiSrv.Shutdown(ctx) }()
	nodeErr := node.Close()
	drain()
	if err := <-drained; err != nil {
		log.Warn("connections still open after the drain timeout: closing them", "err", err)
		apiSrv.Close()
	}
	if metricsSrv != nil {
		mctx, mcancel := context.WithTimeout(context.Background(), time.Second)
		defer mcancel()
		if err := metricsSrv.Shutdown(mctx); err != nil {
			metricsSrv.Close()
		}
	}
	return nodeErr
}

// newMetricsServer serves /metrics, with the same read limits as the API,
// and in a chaos build (-tags chaos) the chaos hooks.
func newMetricsServer(reg *prometheus.Registry, log *slog.Logger, withPprof bool, node *runtime.Node) *http.Server {
	mux := http.NewServeMux()
	chaosHooks(mux, node, log)
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), Registry: reg}))
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          rpc.ServerErrorLog(log),
	}
}

// leadership is what logLeadership reads of a node.
type leadership interface {
	Status(context.Context) (runtime.ClusterStatus, error)
	Health() error
}

// leaderlessGrace is how long a shard may have no leader known before a
// serving member says it is not ready: an election, planned or not, ends
// within an election timeout or two.
const leaderlessGrace = 2 * time.Second

// logLeadership logs each shard's leader, role and term when they change,
// and when this node becomes able to serve or stops being able to (a
// shard without a leader, after leaderlessGrace).
func logLeadership(node leadership, log *slog.Logger, stop <-chan struct{}, every, grace time.Duration) {
	type view struct {
		leader, role string
		term         uint64
	}
	last := map[uint64]view{}
	healthy := false
	var leaderless time.Time // since when no leader is known, while it was not said yet
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := node.Status(ctx)
		cancel()
		if err != nil {
			continue
		}
		for _, s := range st.Shards {
			v := view{s.LeaderID, s.Role, s.Term}
			if last[s.ShardID] != v {
				last[s.ShardID] = v
				log.Info("shard leadership", "shard", s.ShardID, "term", s.Term, "leader", s.LeaderID, "role", s.Role,
					"applied_index", s.AppliedIndex)
			}
		}
		err = node.Health()
		if err == nil {
			leaderless = time.Time{}
		} else if healthy && !errors.Is(err, runtime.ErrCutOff) && !errors.Is(err, runtime.ErrDataDir) && !errors.Is(err, runtime.ErrShuttingDown) {
			// A shard without a leader for a moment is an election: a
			// planned hand-off (cluster transfer, a drain) takes a few
			// hundred ms, and each said "not ready" at WARN. One that
			// lasts past leaderlessGrace is said.
			if leaderless.IsZero() {
				leaderless = time.Now()
			}
			if time.Since(leaderless) < grace {
				continue
			}
		}
		if h := err == nil; h != healthy {
			healthy = h
			switch {
			case h:
				log.Info("ready: every shard has a leader")
			case errors.Is(err, runtime.ErrShuttingDown):
				// It drains, and says so; no shard lost its leader.
			case errors.Is(err, runtime.ErrCutOff):
				// Its peers refuse it: the transport logged why at
				// ERROR; /health says it too.
				log.Warn("not ready: this member is cut off from the cluster; /health answers 503", "reason", err)
			case errors.Is(err, runtime.ErrDataDir):
				// The watch logged it at ERROR; /health says it too.
				log.Warn("not ready: this member's data directory cannot be trusted; /health answers 503", "reason", err)
			default:
				log.Warn("not ready: some shard has no leader; /health answers 503")
			}
		}
	}
}

func printDevBanner(w io.Writer, cfg config.Config, f *serveFlags) {
	api := "http://" + cfg.Cluster.APIAddress
	data := "(a fresh directory; delete it when done)"
	switch {
	case f.dataKept:
		data = "(data kept from an earlier run: the node starts from it)"
	case f.madeDir == "":
		data = "(new; --dev --data-dir with it again starts from its data)"
	}
	lines := []string{
		"",
		"Lockstep dev node " + cfg.Cluster.NodeID + " is starting.",
		"  data     " + cfg.Cluster.DataDir + "   " + data,
		"  API      " + api + "   (Connect, gRPC, gRPC-Web, REST)",
	}
	if cfg.Cluster.MetricsAddress != "" {
		lines = append(lines, "  metrics  http://"+cfg.Cluster.MetricsAddress+"/metrics")
	}
	lines = append(lines,
		"Try:",
		"  curl -s "+api+"/health",
		"  curl -s -X POST "+api+"/locks/demo/acquire -H 'Content-Type: application/json' -d '{\"owner\": \"me\"}'",
		"  curl -s "+api+"/locks/demo/status",
		"Stop with Ctrl-C.",
		"")
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}
